import type { Queryable } from '../core/db/index.ts'
import type { LogEntry, LogSource } from './verify.ts'

const PAGE = 5000

/** Every log that has a head, an event or a checkpoint (a deleted head must not hide a log). */
export async function listLogs(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ log: string }>(
    `SELECT log FROM audit.heads
     UNION SELECT DISTINCT log FROM audit.events
     UNION SELECT DISTINCT log FROM audit.checkpoints
     ORDER BY log`,
  )
  return rows.map((r) => r.log)
}

type EventRow = { idx: number; body: string; leaf_hash: Buffer; root: Buffer }

/** Events of one log in [from, to), in index order, read in pages (the next one prefetched). */
export async function* readEntries(
  db: Queryable,
  log: string,
  from = 0,
  to = Number.MAX_SAFE_INTEGER,
): AsyncGenerator<LogEntry> {
  const page = (start: number) => {
    const p = db.query<EventRow>(
      `SELECT idx, body, leaf_hash, root FROM audit.events
       WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx LIMIT $4`,
      [log, start, to, PAGE],
    )
    p.catch(() => {}) // a consumer that stops early never awaits the prefetched page
    return p
  }
  let pending = page(from)
  for (;;) {
    const { rows } = await pending
    // Fetch the next page while the caller hashes this one. Keyset on idx: a gap (deleted row)
    // shows up as a jump in the indexes the verifier sees.
    const last = rows[rows.length - 1]
    if (rows.length === PAGE && last) pending = page(last.idx + 1)
    for (const r of rows) yield { index: r.idx, body: r.body, leafHash: r.leaf_hash, root: r.root }
    if (rows.length < PAGE) return
  }
}

export async function readHead(db: Queryable, log: string) {
  const { rows } = await db.query<{ size: number; root: Buffer }>(
    'SELECT size, root FROM audit.heads WHERE log = $1',
    [log],
  )
  return rows[0]
}

export async function readCheckpointNotes(db: Queryable, log: string): Promise<string[]> {
  const { rows } = await db.query<{ note: string }>(
    'SELECT note FROM audit.checkpoints WHERE log = $1 ORDER BY size, id',
    [log],
  )
  return rows.map((r) => r.note)
}

/** A verification source over the live database. */
export async function databaseSource(db: Queryable, log: string): Promise<LogSource> {
  const head = await readHead(db, log)
  return {
    log,
    entries: readEntries(db, log),
    checkpoints: await readCheckpointNotes(db, log),
    // A log with events but no head row: the head was deleted; an empty head still counts.
    head: head ?? { size: 0, root: Buffer.alloc(32) },
  }
}
