import type { Queryable, QueryResult } from '../core/db/index.ts'
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
 * Appends leaves to one or more logs inside `q`'s transaction; returns each log's first new index.
 * The head rows are locked first, in log-name order (lockHeads), so concurrent writers of the
 * same log queue behind each other, indexes stay gapless and two batches never deadlock; writers
 * of different logs never wait for each other. Two statements whatever the batch size and number
 * of logs (four when a log is new).
 */
export async function appendBatch(
  q: Queryable,
  batch: ReadonlyMap<string, readonly Leaf[]>,
): Promise<Map<string, number>> {
  const { first, written } = await startAppendBatch(q, batch)
  await written
  return first
}

/**
 * appendBatch up to sending its last statement: resolves once the heads are locked and read,
 * with the first indexes and the write still in flight (`written`). In a transaction the write
 * need not be awaited before COMMIT (the transaction waits for it, see Transaction), which saves
 * a round trip for group commits.
 */
export async function startAppendBatch(
  q: Queryable,
  batch: ReadonlyMap<string, readonly Leaf[]>,
): Promise<{ first: Map<string, number>; written: Promise<unknown> }> {
  const plan = planAppend(await lockHeads(q, [...batch.keys()].sort()), batch)
  const written = q.query(
    `WITH e AS (
       INSERT INTO audit.events (log, idx, body, leaf_hash, root)
       SELECT l, i, b, decode(lh, 'hex'), decode(r, 'hex')
       FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS t(l, i, b, lh, r)
     ), ${nodesAndHeads('true')}`,
    [
      plan.events.log,
      plan.events.idx,
      plan.events.leaves.map((l) => l.body),
      plan.events.leaf,
      plan.events.root,
      ...plan.rest,
    ],
  )
  return { first: plan.first, written }
}

/** A queued event to integrate: its queue row and leaf hash (the body stays in the database). */
export interface QueuedLeaf {
  id: number
  hash: Buffer
}

/**
 * Integrates queued events into their logs inside `q`'s transaction, like startAppendBatch, but
 * without sending their bodies back: one statement deletes the queue rows and inserts their
 * bodies as the log's events. Every queue row must still be there (the caller holds the
 * sequencer lock, and queue rows are never changed): if one were missing, the statement fails
 * instead of leaving a hole in the tree.
 *
 * `heads` are the logs' current heads when the caller knows them (the sole writer, which wrote
 * them last): then none is locked or read. The write checks each head's size all the same, and
 * fails whole if one moved; its row count is the number of heads it moved, which the caller must
 * check (a head row that is gone leaves the write nothing to check). Without them, the heads are
 * locked and read first. Resolves with the new heads (`next`) and the write in flight.
 */
export async function startIntegration(
  q: Queryable,
  batch: ReadonlyMap<string, readonly QueuedLeaf[]>,
  heads?: readonly HeadRow[],
): Promise<{
  first: Map<string, number>
  next: HeadRow[]
  written: Promise<QueryResult<unknown>>
}> {
  const plan = planAppend(heads ?? (await lockHeads(q, [...batch.keys()].sort())), batch)
  const written = q.query(
    `WITH d AS (
       DELETE FROM audit.queue WHERE id = ANY($1::bigint[]) RETURNING id, body
     ), e AS (
       INSERT INTO audit.events (log, idx, body, leaf_hash, root)
       SELECT t.l, t.i, d.body, decode(t.lh, 'hex'), decode(t.r, 'hex')
       FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[]) AS t(id, l, i, lh, r)
       JOIN d ON d.id = t.id
       RETURNING 1
     ), ${nodesAndHeads('(SELECT count(*) FROM e) = cardinality($1::bigint[])')}`,
    [
      plan.events.leaves.map((l) => l.id),
      plan.events.log,
      plan.events.idx,
      plan.events.leaf,
      plan.events.root,
      ...plan.rest,
    ],
  )
  return { first: plan.first, next: plan.next, written }
}

/**
 * The rest of both writes: stored nodes ($6–$9) and the new heads ($10–$14: log, size, frontier,
 * root, the size it was planned from). A head is only moved from the size the plan started at,
 * and only when `ok` holds; otherwise its size is NULL, which heads.size (NOT NULL) refuses, so
 * the whole statement fails: a head that moved since it was read, or a queue row that was gone,
 * never leaves a hole or a fork in the tree.
 */
const nodesAndHeads = (ok: string) => `n AS (
       INSERT INTO audit.nodes (log, level, idx, hash)
       SELECT l, lv, i, decode(h, 'hex')
       FROM unnest($6::text[], $7::smallint[], $8::bigint[], $9::text[]) AS t(l, lv, i, h)
     )
     UPDATE audit.heads AS h
     SET size = CASE WHEN ${ok} AND h.size = u.prev THEN u.size END,
       frontier = decode(u.f, 'hex'), root = decode(u.r, 'hex'), updated_at = now()
     FROM unnest($10::text[], $11::bigint[], $12::text[], $13::text[], $14::bigint[])
       AS u(log, size, f, r, prev)
     WHERE h.log = u.log`

/**
 * Lays the leaves out in each log from its head: indexes, the root after each leaf, completed
 * nodes at stored levels, and the new heads, as the columns of the write's parameters. `heads`
 * must hold every log of the batch.
 */
function planAppend<L extends { hash: Buffer }>(
  heads: readonly HeadRow[],
  batch: ReadonlyMap<string, readonly L[]>,
) {
  const events = {
    log: [] as string[],
    idx: [] as number[],
    leaves: [] as L[],
    leaf: [] as string[],
    root: [] as string[],
  }
  const nd = {
    log: [] as string[],
    level: [] as number[],
    idx: [] as number[],
    hash: [] as string[],
  }
  const hd = {
    log: [] as string[],
    size: [] as number[],
    frontier: [] as string[],
    root: [] as string[],
    prev: [] as number[],
  }
  const first = new Map<string, number>()
  const next: HeadRow[] = []
  for (const { log, size, frontier: bytes } of heads) {
    const leaves = batch.get(log)
    if (!leaves) continue
    const frontier = new Frontier(size, splitFrontier(bytes))
    first.set(log, size)
    const onNode = (level: number, index: number, hash: Buffer) => {
      if (level < STORED_NODE_LEVEL) return
      nd.log.push(log)
      nd.level.push(level)
      nd.idx.push(index)
      nd.hash.push(hash.toString('hex'))
    }
    for (const leaf of leaves) {
      events.log.push(log)
      events.idx.push(frontier.size)
      frontier.append(leaf.hash, onNode)
      events.leaves.push(leaf)
      events.leaf.push(leaf.hash.toString('hex'))
      events.root.push(frontier.root().toString('hex'))
    }
    const edge = Buffer.concat(frontier.hashes)
    next.push({ log, size: frontier.size, frontier: edge })
    hd.log.push(log)
    hd.size.push(frontier.size)
    hd.frontier.push(edge.toString('hex'))
    hd.root.push(frontier.root().toString('hex'))
    hd.prev.push(size)
  }
  if (first.size !== batch.size) throw new Error('a log of the batch has no head to append to')
  return {
    first,
    next,
    events,
    rest: [nd.log, nd.level, nd.idx, nd.hash, hd.log, hd.size, hd.frontier, hd.root, hd.prev],
  }
}

/** A log's head: its size and frontier (the roots of its perfect subtrees, concatenated). */
export interface HeadRow {
  log: string
  size: number
  frontier: Buffer
}

const LOCK_HEADS = `SELECT log, size, frontier FROM audit.heads WHERE log = ANY($1::text[])
  ORDER BY log FOR UPDATE`

/**
 * Locks and reads the heads of `logs` (sorted), creating those that do not exist yet. A log's head
 * exists from its first append on, so the insert is seldom needed; locking an existing row
 * (SELECT … FOR UPDATE, in log order) writes no new row version, as an upsert would.
 */
export async function lockHeads(q: Queryable, logs: readonly string[]): Promise<HeadRow[]> {
  const heads = await q.query<HeadRow>(LOCK_HEADS, [logs])
  if (heads.rows.length === logs.length) return heads.rows
  await q.query(
    'INSERT INTO audit.heads (log) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT (log) DO NOTHING',
    [logs],
  )
  return (await q.query<HeadRow>(LOCK_HEADS, [logs])).rows
}

/** Appends leaves to one log; returns the index of the first. */
export async function appendLeaves(q: Queryable, log: string, leaves: readonly Leaf[]) {
  return (await appendBatch(q, new Map([[log, leaves]]))).get(log)!
}
