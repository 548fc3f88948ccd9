import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  consistencyRanges,
  Frontier,
  inclusionRanges,
  nodesFor,
  rangeHash,
  rootOf,
} from '../../src/audit/merkle.ts'
import { leaf, mth, verifyConsistency, verifyInclusion } from './rfc6962.ts'

const leaves = (n: number) => Array.from({ length: n }, (_, i) => leaf(Buffer.from(`leaf ${i}`)))

/** Perfect-node lookup over an in-memory list (what the database provides in production). */
const nodeOf = (ls: Buffer[]) => (level: number, index: number) =>
  mth(ls.slice(index * 2 ** level, (index + 1) * 2 ** level))

describe('RFC 6962 Merkle tree', () => {
  it('the frontier root equals the recursive MTH for every size up to 70', () => {
    for (let n = 0; n <= 70; n++) assert.ok(rootOf(leaves(n)).equals(mth(leaves(n))), `size ${n}`)
  })

  it('matches a known root (SHA-256 of the empty string for the empty tree)', () => {
    assert.equal(
      new Frontier().root().toString('hex'),
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    )
  })

  it('inclusion proofs verify with the independent verifier (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.constant(n), fc.nat(n - 1))),
        ([n, m]) => {
          const ls = leaves(n)
          const node = nodeOf(ls)
          const path = inclusionRanges(m, n).map(([a, b]) => rangeHash(node, a, b))
          assert.ok(verifyInclusion(m, n, ls[m]!, path, mth(ls)))
          // A wrong leaf, index or root must fail.
          assert.ok(!verifyInclusion(m, n, leaf(Buffer.from('forged')), path, mth(ls)))
          if (n > 1) assert.ok(!verifyInclusion((m + 1) % n, n, ls[m]!, path, mth(ls)))
          assert.ok(!verifyInclusion(m, n, ls[m]!, path, mth(ls.slice(0, n - 1))))
        },
      ),
      { numRuns: 200 },
    )
  })

  it('consistency proofs verify with the independent verifier (property)', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 300 })
          .chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n))),
        ([m, n]) => {
          const ls = leaves(n)
          const node = nodeOf(ls)
          const proof = consistencyRanges(m, n).map(([a, b]) => rangeHash(node, a, b))
          assert.ok(verifyConsistency(m, n, mth(ls.slice(0, m)), mth(ls), proof))
          if (m < n) {
            // A rewritten history (one old leaf changed) is not consistent with the new root.
            const forged = [...ls]
            forged[m - 1] = leaf(Buffer.from('rewritten'))
            assert.ok(!verifyConsistency(m, n, mth(forged.slice(0, m)), mth(ls), proof))
          }
        },
      ),
      { numRuns: 200 },
    )
  })

  it('proofs only need perfect aligned nodes', () => {
    for (const [a, b] of nodesFor([...inclusionRanges(5, 1000), ...consistencyRanges(300, 1000)])) {
      assert.ok(Number.isInteger(a) && Number.isInteger(b))
    }
  })
})
