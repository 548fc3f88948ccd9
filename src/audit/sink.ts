import type { Clock } from '../core/clock.ts'
import type { Db, Transaction } from '../core/db/index.ts'
import type { EventSink, SecurityEvent } from '../core/events.ts'
import { appendLeaves, type Leaf, startAppendBatch } from './append.ts'
import { canonicalBytes, toRecord } from './event.ts'
import { leafHash } from './merkle.ts'
import type { Pseudonymizer } from './pseudonym.ts'

/** The role appends run as, so that they hold no privilege beyond INSERT on the log. */
export const WRITER_ROLE = 'dflare_audit_writer'

interface Pending {
  log: string
  leaf: Leaf
  resolve: () => void
  reject: (err: unknown) => void
}

export interface AuditSinkOptions {
  db: Db
  clock: Clock
  pseudonymizer: Pseudonymizer
  /** Most events per group commit. */
  maxBatch: number
  /** Group commits in flight at once (they overlap one commit's fsync with the next batch). */
  concurrency?: number
}

/**
 * The audit log's EventSink. With a caller transaction the event is appended inside it (the head
 * row stays locked until the caller commits). Without one, events are group-committed: every
 * event queued while a commit is in flight goes into the next transaction, and each `record`
 * resolves only after the COMMIT that made its event durable returned. Any failure rejects.
 */
export class AuditSink implements EventSink {
  readonly #o: AuditSinkOptions
  #queue: Pending[] = []
  #inFlight = 0
  /** Logs whose heads an in-flight group commit holds. */
  readonly #busy = new Set<string>()
  #closed = false

  constructor(options: AuditSinkOptions) {
    this.#o = options
  }

  /** Minimizes, validates and hashes; throws on an invalid event (fail closed). */
  prepare(event: SecurityEvent): { log: string; leaf: Leaf } {
    const record = toRecord(event, this.#o.pseudonymizer, this.#o.clock.now())
    const bytes = canonicalBytes(record)
    return { log: record.tenant, leaf: { body: bytes.toString('utf8'), hash: leafHash(bytes) } }
  }

  async record(event: SecurityEvent, tx?: Transaction): Promise<void> {
    if (this.#closed) throw new Error('the audit log is closed')
    const { log, leaf } = this.prepare(event)
    if (tx) {
      await appendLeaves(tx, log, [leaf])
      return
    }
    await new Promise<void>((resolve, reject) => {
      this.#queue.push({ log, leaf, resolve, reject })
      this.#pump()
    })
  }

  /** Waits until every queued event is committed or failed; refuses new events. */
  async close(): Promise<void> {
    this.#closed = true
    while (this.#queue.length > 0 || this.#inFlight > 0) await new Promise((r) => setTimeout(r, 5))
  }

  /**
   * Starts group commits while there is room. Concurrent commits take disjoint sets of logs, so
   * they never wait on each other's head locks and PostgreSQL can flush their WAL together.
   */
  #pump() {
    const limit = this.#o.concurrency ?? 4
    while (this.#queue.length > 0 && this.#inFlight < limit) {
      const batch: Pending[] = []
      const rest: Pending[] = []
      const taken = new Set<string>()
      for (const p of this.#queue) {
        const free = taken.has(p.log) || (!this.#busy.has(p.log) && batch.length < this.#o.maxBatch)
        if (free && batch.length < this.#o.maxBatch) {
          taken.add(p.log)
          batch.push(p)
        } else rest.push(p)
      }
      if (batch.length === 0) return
      this.#queue = rest
      for (const log of taken) this.#busy.add(log)
      this.#inFlight++
      this.#commit(batch).finally(() => {
        for (const log of taken) this.#busy.delete(log)
        this.#inFlight--
        this.#pump()
      })
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    const byLog = new Map<string, Leaf[]>()
    for (const p of batch) {
      const list = byLog.get(p.log)
      if (list) list.push(p.leaf)
      else byLog.set(p.log, [p.leaf])
    }
    for (let attempt = 1; ; attempt++) {
      try {
        // BEGIN leaves with the head locks, COMMIT right behind the write: two round trips. (The
        // head upsert is harmless should it ever run without its BEGIN: it changes nothing.)
        await this.#o.db.transaction(
          async (tx) => {
            const { written } = await startAppendBatch(tx, byLog)
            written.catch(() => {}) // awaited by the transaction before it commits
          },
          { role: WRITER_ROLE, pipelineBegin: true },
        )
        for (const p of batch) p.resolve()
        return
      } catch (err) {
        // A deadlock with a caller transaction that locked heads in another order: nothing was
        // committed, so retrying is safe.
        const code = (err as { code?: string }).code
        if ((code === '40P01' || code === '40001') && attempt < 5) continue
        for (const p of batch) p.reject(err)
        return
      }
    }
  }
}
