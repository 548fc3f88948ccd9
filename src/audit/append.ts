import type { Queryable } from '../core/db/index.ts'
import { Frontier } from './merkle.ts'

/** A leaf ready to append: its canonical body and leaf hash. */
export interface Leaf {
  body: string
  hash: Buffer
}

/** Perfect subtrees at this level and above are persisted in audit.nodes (for proofs). */
export const STORED_NODE_LEVEL = 8
const HASH = 32

export function splitFrontier(bytes: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < bytes.length; i += HASH) out.push(Buffer.from(bytes.subarray(i, i + HASH)))
  return out
}

/**
 * Appends leaves to one log inside `q`'s transaction and returns the index of the first one.
 * The head row is locked first (INSERT … ON CONFLICT DO UPDATE takes the row lock), so concurrent
 * writers of the same log queue behind each other and indexes stay gapless; writers of different
 * logs never wait for each other. Three statements whatever the batch size.
 */
export async function appendLeaves(q: Queryable, log: string, leaves: readonly Leaf[]) {
  const head = await q.query<{ size: number; frontier: Buffer }>(
    `INSERT INTO audit.heads AS h (log) VALUES ($1)
     ON CONFLICT (log) DO UPDATE SET log = h.log
     RETURNING h.size, h.frontier`,
    [log],
  )
  const { size, frontier: bytes } = head.rows[0]!
  const frontier = new Frontier(size, splitFrontier(bytes))
  const idx: number[] = []
  const bodies: string[] = []
  const leafHex: string[] = []
  const roots: string[] = []
  const nodeLevel: number[] = []
  const nodeIdx: number[] = []
  const nodeHex: string[] = []
  const onNode = (level: number, index: number, hash: Buffer) => {
    if (level < STORED_NODE_LEVEL) return
    nodeLevel.push(level)
    nodeIdx.push(index)
    nodeHex.push(hash.toString('hex'))
  }
  for (const leaf of leaves) {
    idx.push(frontier.size)
    frontier.append(leaf.hash, onNode)
    bodies.push(leaf.body)
    leafHex.push(leaf.hash.toString('hex'))
    roots.push(frontier.root().toString('hex'))
  }
  await q.query(
    `INSERT INTO audit.events (log, idx, body, leaf_hash, root)
     SELECT $1, i, b, decode(l, 'hex'), decode(r, 'hex')
     FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS t(i, b, l, r)`,
    [log, idx, bodies, leafHex, roots],
  )
  if (nodeHex.length > 0)
    await q.query(
      `INSERT INTO audit.nodes (log, level, idx, hash)
       SELECT $1, lv, i, decode(h, 'hex')
       FROM unnest($2::smallint[], $3::bigint[], $4::text[]) AS t(lv, i, h)`,
      [log, nodeLevel, nodeIdx, nodeHex],
    )
  await q.query(
    `UPDATE audit.heads SET size = $2, frontier = $3, root = $4, updated_at = now() WHERE log = $1`,
    [log, frontier.size, Buffer.concat(frontier.hashes), frontier.root()],
  )
  return size
}
