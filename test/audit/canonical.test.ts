import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import canonicalize from 'canonicalize'
import fc from 'fast-check'
import { canonicalJson, canonicalText, InvalidEventError, toRecord } from '../../src/audit/event.ts'
import { Pseudonymizer } from '../../src/audit/pseudonym.ts'
import { event } from './helpers.ts'

/** What RFC 8785 says (the canonicalize package), or the error it raises. */
function reference(value: unknown): { json: string | undefined } | { error: true } {
  try {
    return { json: canonicalize(value) }
  } catch {
    return { error: true }
  }
}

function ours(value: unknown): { json: string | undefined } | { error: true } {
  try {
    return { json: canonicalText(value) }
  } catch (err) {
    assert.ok(err instanceof InvalidEventError)
    return { error: true }
  }
}

// Keys that JavaScript enumerates out of insertion order (integer-like), sort differently as
// numbers and as text, or carry characters past the BMP and lone surrogates.
const key = fc.oneof(
  fc.constantFrom('0', '1', '9', '10', '01', '-1', '4294967295', 'a', 'B', 'é', '😀', '\uD800'),
  fc.string({ unit: 'binary', maxLength: 4 }),
)
const value = fc.letrec((tie) => ({
  any: fc.oneof(
    { depthSize: 'small' },
    fc.string({ unit: 'binary', maxLength: 6 }),
    fc.constantFrom('\uD800', 'a\uDFFF', '\uD83D\uDE00'),
    fc.double(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('any'), { maxLength: 4 }),
    fc.dictionary(key, tie('any'), { maxKeys: 5 }),
  ),
})).any

describe('audit: canonical JSON (RFC 8785)', () => {
  it('matches canonicalize for any JSON value, and refuses what it refuses', () => {
    fc.assert(
      fc.property(value, (v) => {
        assert.deepEqual(ours(v), reference(v))
      }),
      { numRuns: 2000 },
    )
  })

  it('takes the general path where JSON.stringify would differ', () => {
    // Integer-like keys come first in JavaScript's order, not in RFC 8785's.
    assert.equal(canonicalText({ b: 1, 10: 2, 9: 3 }), '{"10":2,"9":3,"b":1}')
    // toJSON, undefined and non-finite numbers.
    assert.equal(canonicalText({ d: new Date(0) }), '{"d":"1970-01-01T00:00:00.000Z"}')
    assert.equal(canonicalText({ a: undefined, b: [undefined] }), '{"b":[null]}')
    assert.throws(() => canonicalText({ n: Number.NaN }), InvalidEventError)
    assert.throws(() => canonicalText(['\uDC00']), InvalidEventError)
  })

  it('records, with any details, are written in canonical order', () => {
    const p = new Pseudonymizer(Buffer.alloc(32, 1), { pseudonymizeIps: false })
    const details = fc.dictionary(
      key.filter((k) => k.isWellFormed()),
      fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.array(fc.integer(), { maxLength: 3 })),
      { maxKeys: 6 },
    )
    fc.assert(
      fc.property(details, fc.boolean(), fc.boolean(), (d, withRealm, withResource) => {
        const record = toRecord(
          event(3, {
            details: d,
            actor: { kind: 'service', id: 'sa-1', ...(withRealm ? { realm: 'acme' } : {}) },
            ...(withResource ? {} : { resource: undefined }),
          }),
          p,
          new Date(Date.UTC(2026, 10, 29)),
        )
        const json = canonicalJson(record)
        assert.equal(json, canonicalize(record))
        assert.deepEqual(JSON.parse(json), JSON.parse(JSON.stringify(record)))
      }),
      { numRuns: 500 },
    )
  })
})
