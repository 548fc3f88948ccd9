import type { Queryable } from '../core/db/index.ts'
import { problems } from '../core/errors.ts'
import { STORED_NODE_LEVEL } from './append.ts'
import { readHead } from './db-source.ts'
import { consistencyRanges, inclusionRanges, nodesFor, rangeHash, rootOf } from './merkle.ts'

export interface InclusionProof {
  leafIndex: number
  treeSize: number
  leafHash: string
  rootHash: string
  /** RFC 6962 audit path, leaf side first, base64. */
  auditPath: string[]
}

export interface ConsistencyProof {
  firstSize: number
  secondSize: number
  firstRoot: string
  secondRoot: string
  /** RFC 6962 consistency proof, base64. */
  proof: string[]
}

/**
 * Builds RFC 6962 proofs from the stored hashes: perfect subtrees of 256 leaves and more come
 * from audit.nodes, smaller ones are hashed from at most 255 leaf hashes, so a proof costs a few
 * queries whatever the size of the log. Proofs are only as good as the checkpoint they are
 * checked against: clients verify them against a signed root.
 */
export class ProofService {
  readonly #db: Queryable

  constructor(db: Queryable) {
    this.#db = db
  }

  async #size(log: string): Promise<number> {
    return (await readHead(this.#db, log))?.size ?? 0
  }

  /** Resolves every perfect node needed, with one query for stored nodes and one per leaf block. */
  async #resolver(log: string, needed: [number, number][]) {
    const hashes = new Map<string, Buffer>()
    const stored = needed.filter(([l]) => l >= STORED_NODE_LEVEL)
    if (stored.length > 0) {
      const { rows } = await this.#db.query<{ level: number; idx: number; hash: Buffer }>(
        `SELECT n.level, n.idx, n.hash FROM audit.nodes n
         JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx
         WHERE n.log = $1`,
        [log, stored.map((s) => s[0]), stored.map((s) => s[1])],
      )
      for (const r of rows) hashes.set(`${r.level}/${r.idx}`, r.hash)
    }
    // Small subtrees near the leaf and near the right edge of the tree lie in at most a few
    // 256-leaf blocks: read each block's leaf hashes once.
    const blocks = new Map<number, [number, number][]>()
    for (const [l, i] of needed.filter(([l]) => l < STORED_NODE_LEVEL)) {
      const block = Math.floor((i * 2 ** l) / 2 ** STORED_NODE_LEVEL)
      blocks.set(block, [...(blocks.get(block) ?? []), [l, i]])
    }
    for (const nodes of blocks.values()) {
      const from = Math.min(...nodes.map(([l, i]) => i * 2 ** l))
      const to = Math.max(...nodes.map(([l, i]) => (i + 1) * 2 ** l))
      const { rows } = await this.#db.query<{ idx: number; leaf_hash: Buffer }>(
        'SELECT idx, leaf_hash FROM audit.events WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx',
        [log, from, to],
      )
      if (rows.length !== to - from) throw new Error(`audit log ${log} is missing leaves`)
      const leaves = rows.map((r) => r.leaf_hash)
      for (const [l, i] of nodes)
        hashes.set(`${l}/${i}`, rootOf(leaves.slice(i * 2 ** l - from, (i + 1) * 2 ** l - from)))
    }
    return (level: number, index: number) => {
      const h = hashes.get(`${level}/${index}`)
      if (!h) throw new Error(`audit log ${log} is missing node ${level}/${index}`)
      return h
    }
  }

  async inclusion(log: string, leafIndex: number, treeSize: number): Promise<InclusionProof> {
    const size = await this.#size(log)
    if (treeSize < 1 || treeSize > size) throw problems.badRequest('tree size out of range')
    if (leafIndex < 0 || leafIndex >= treeSize) throw problems.badRequest('leaf index out of range')
    const ranges = inclusionRanges(leafIndex, treeSize)
    const rootRanges: [number, number][] = [[0, treeSize]]
    const node = await this.#resolver(
      log,
      nodesFor([...ranges, ...rootRanges, [leafIndex, leafIndex + 1]]),
    )
    return {
      leafIndex,
      treeSize,
      leafHash: node(0, leafIndex).toString('base64'),
      rootHash: rangeHash(node, 0, treeSize).toString('base64'),
      auditPath: ranges.map(([a, b]) => rangeHash(node, a, b).toString('base64')),
    }
  }

  async consistency(log: string, firstSize: number, secondSize: number): Promise<ConsistencyProof> {
    const size = await this.#size(log)
    if (secondSize > size) throw problems.badRequest('second size out of range')
    if (firstSize < 1 || firstSize > secondSize)
      throw problems.badRequest('first size out of range')
    const ranges = consistencyRanges(firstSize, secondSize)
    const node = await this.#resolver(log, nodesFor([...ranges, [0, firstSize], [0, secondSize]]))
    return {
      firstSize,
      secondSize,
      firstRoot: rangeHash(node, 0, firstSize).toString('base64'),
      secondRoot: rangeHash(node, 0, secondSize).toString('base64'),
      proof: ranges.map(([a, b]) => rangeHash(node, a, b).toString('base64')),
    }
  }
}
