import type { Clock } from '../core/clock.ts'
import { type Db, prepared, type Queryable, type Transaction } from '../core/db/index.ts'
import { type EventSink, markAuditFailure, type SecurityEvent } from '../core/events.ts'
import { canonicalJson, toRecord } from './event.ts'
import type { Pseudonymizer } from './pseudonym.ts'

/** An event ready to queue: the log it belongs to and its canonical record (the future leaf). */
export interface PreparedEvent {
  log: string
  body: string
}

interface Pending extends PreparedEvent {
  resolve: () => void
  reject: (err: unknown) => void
}

export interface AuditSinkOptions {
  db: Db
  clock: Clock
  pseudonymizer: Pseudonymizer
  /** Most events per group commit. */
  maxBatch: number
  /**
   * Group commits in flight at once (default 1). Events that arrive while a commit is in flight
   * wait for the next, which takes them all: one statement and one WAL flush for the lot. With
   * more in flight, commits carry fewer events each and the database does more work per event.
   */
  concurrency?: number
  /** Told after each group commit, so that the queued events reach the Merkle log soon. */
  onQueued?: () => void
}

/** The statements that queue events (exported for tests). */
export const ENQUEUE = {
  one: prepared('INSERT INTO audit.queue (log, body) VALUES ($1, $2)'),
  // Arrays of different lengths leave a NULL that the NOT NULL columns refuse.
  many: prepared(
    'INSERT INTO audit.queue (log, body) SELECT * FROM unnest($1::text[], $2::text[])',
  ),
}

/**
 * Queues prepared events with one statement, prepared once per connection (migration 0005): the
 * caller may insert the queue's log and body columns and nothing else of the audit schema. Inside
 * `q`'s transaction when `q` is one; on the pool it is an autocommit statement, durable when it
 * returns.
 */
export function enqueue(q: Queryable, events: readonly PreparedEvent[]) {
  // One event (a request's own) goes as plain text parameters: no array literal to escape
  // quote by quote here and to parse back on the server.
  if (events.length === 1) return q.query(ENQUEUE.one, [events[0]!.log, events[0]!.body])
  return q.query(ENQUEUE.many, [events.map((e) => e.log), events.map((e) => e.body)])
}

/**
 * The audit log's EventSink. An event is durable once it is committed to the queue, from which
 * the sequencer integrates it into its log. With a caller transaction the event is queued inside
 * it (the state change and its event commit together or not at all; no lock is shared with other
 * writers): the statement is issued, and the caller's commit waits for it. Without one, events
 * are group-committed: every event waiting when a commit starts goes into it (one autocommit
 * statement), and each `record` resolves only after the statement that made its event durable
 * returned. Any failure rejects.
 */
export class AuditSink implements EventSink {
  readonly #o: AuditSinkOptions
  #queue: Pending[] = []
  #inFlight = 0
  #closed = false

  constructor(options: AuditSinkOptions) {
    this.#o = options
  }

  /** Minimizes, validates and encodes; throws on an invalid event (fail closed). */
  prepare(event: SecurityEvent): PreparedEvent {
    const record = toRecord(event, this.#o.pseudonymizer, this.#o.clock.now())
    return { log: record.tenant, body: canonicalJson(record) }
  }

  async record(event: SecurityEvent, tx?: Transaction): Promise<void> {
    if (this.#closed) throw new Error('the audit log is closed')
    const prepared = this.prepare(event)
    if (tx) {
      // Issued, not awaited: the caller's COMMIT follows in the same round trip and fails if
      // this did.
      markAuditFailure(enqueue(tx, [prepared]))
      // The caller commits later; a kick now only wakes the sequencer early (its timer and
      // every later kick find the event once it is committed).
      this.#o.onQueued?.()
      return
    }
    await new Promise<void>((resolve, reject) => {
      this.#queue.push({ ...prepared, resolve, reject })
      this.#pump()
    })
  }

  /** Waits until every queued event is committed or failed; refuses new events. */
  async close(): Promise<void> {
    this.#closed = true
    while (this.#queue.length > 0 || this.#inFlight > 0) await new Promise((r) => setTimeout(r, 5))
  }

  /** Starts group commits while there is room; each takes everything waiting, up to maxBatch. */
  #pump() {
    const limit = this.#o.concurrency ?? 1
    while (this.#queue.length > 0 && this.#inFlight < limit) {
      const batch = this.#queue.splice(0, this.#o.maxBatch)
      this.#inFlight++
      this.#commit(batch).finally(() => {
        this.#inFlight--
        this.#pump()
      })
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    try {
      await enqueue(this.#o.db, batch)
    } catch (err) {
      for (const p of batch) p.reject(err)
      return
    }
    for (const p of batch) p.resolve()
    this.#o.onQueued?.()
  }
}
