import { AsyncLocalStorage } from 'node:async_hooks'
import { Counter, type Registry } from 'prom-client'
import type { Db, QueryResult } from '../core/db/index.ts'
import { type HeadRow, lockHeads, type QueuedLeaf, startIntegration } from './append.ts'
import { leafHashOfText } from './merkle.ts'

/** The only role that may advance a log (and remove what it integrated from the queue). */
export const SEQUENCER_ROLE = 'dflare_audit_sequencer'

/**
 * Transaction-level advisory lock held while integrating: one sequencer at a time across every
 * process on the database, so a log's order is the queue's order and `drain` sees every event
 * committed before it was called. ("dflare" + 1 as a 64-bit key.) Not taken on the sole writer
 * (Db.soleWriter), whose one connection runs one transaction at a time anyway.
 */
const SEQUENCER_LOCK = '7306644318658297857'

export interface SequencerOptions {
  db: Db
  /** Most events integrated by one transaction. */
  batch: number
  /** After a kick, wait this long so that one transaction integrates what arrives meanwhile. */
  delayMs: number
  /** How often the queue is checked for events queued by other processes. */
  pollMs: number
  onError(err: unknown): void
  metrics?: Registry
  /**
   * Most log heads kept known on the sole writer (default 4096), the most recently written: a log
   * beyond them has its head read again when it next grows.
   */
  knownHeads?: number
}

/**
 * Moves queued events (audit.queue) into their Merkle logs. Each transaction takes the oldest
 * queued events, appends them to their logs in queue order and deletes them from the queue, so an
 * event is integrated exactly once or stays queued (a failed transaction changes nothing and the
 * next run retries). Runs shortly after a kick (the sink kicks after each group commit), on a
 * timer for events other processes queued, and on demand (`drain`) before anything reads the log.
 */
export class AuditSequencer {
  readonly #o: SequencerOptions
  /** Integrations run one at a time in this process (the advisory lock covers other processes). */
  #exclusive: Promise<unknown> = Promise.resolve()
  #timer: NodeJS.Timeout | undefined
  #poll: NodeJS.Timeout | undefined
  #loop: Promise<void> | undefined
  #again = false
  #stopped = false
  readonly #integrated: Counter | undefined
  /**
   * On the sole writer (Db.soleWriter: no other process uses the database), each log's head as
   * this sequencer last wrote it: an integration of logs it knows locks and reads no head (and
   * takes no advisory lock: there is no other process to exclude). The write still checks every
   * head's size, so a head moved by anyone else (another sequencer in this process, a restore)
   * fails it, and the integration is redone from the heads in the database.
   */
  readonly #heads: Map<string, HeadRow> | undefined
  /**
   * Runs a function in the context the sequencer was created in. Kicks come from inside callers'
   * transactions and requests; background integration must not inherit those (on PGlite a
   * transaction begun "inside" another one is refused, and a request's context carries its own
   * state, see core/db/piggyback.ts).
   */
  readonly #detached = AsyncLocalStorage.snapshot()

  constructor(options: SequencerOptions) {
    this.#o = options
    this.#heads = options.db.soleWriter ? new Map() : undefined
    this.#integrated = options.metrics
      ? new Counter({
          name: 'dflare_audit_events_integrated_total',
          help: 'Queued audit events appended to their Merkle logs',
          registers: [options.metrics],
        })
      : undefined
  }

  /** Starts the timer that picks up events queued by other processes. */
  start() {
    this.#poll ??= setInterval(() => this.#detached(() => this.#check()), this.#o.pollMs)
    this.#poll.unref()
  }

  #check() {
    this.#o.db
      .query('SELECT 1 FROM audit.queue LIMIT 1')
      .then(({ rows }) => {
        if (rows.length > 0) this.kick(0)
      })
      .catch(this.#o.onError)
  }

  /** Integrates what is queued, soon (after `delayMs`, so that one transaction takes many). */
  kick(delayMs = this.#o.delayMs) {
    if (this.#timer || this.#stopped) return
    this.#timer = setTimeout(
      () =>
        this.#detached(() => {
          this.#timer = undefined
          this.#again = true
          this.#loop ??= this.#run().finally(() => {
            this.#loop = undefined
          })
        }),
      delayMs,
    )
    this.#timer.unref()
  }

  /**
   * Resolves once every event committed to the queue before the call is in its log (read your
   * writes before queries). Throws if integration fails.
   */
  async drain(): Promise<void> {
    while ((await this.#integrateExclusive()) === this.#o.batch);
  }

  /** Stops the timers (later kicks are ignored) and integrates what is left. */
  async stop() {
    this.#stopped = true
    if (this.#poll) clearInterval(this.#poll)
    if (this.#timer) clearTimeout(this.#timer)
    this.#poll = this.#timer = undefined
    await this.#loop
    await this.drain()
  }

  async #run() {
    while (this.#again) {
      this.#again = false
      try {
        await this.drain()
      } catch (err) {
        this.#o.onError(err) // the events stay queued; the next kick or poll retries
        return
      }
    }
  }

  #integrateExclusive(): Promise<number> {
    const next = this.#exclusive.then(() => this.integrate())
    this.#exclusive = next.catch(() => {})
    return next
  }

  /** One transaction: integrates up to `batch` of the oldest queued events; returns how many. */
  async integrate(): Promise<number> {
    let moved: number
    try {
      moved = await this.#integrate(true)
    } catch (err) {
      // Nothing was committed. When it was planned from heads known here and the database refused
      // a head (one moved, or is gone), they are forgotten and the integration redone from the
      // heads in the database.
      if (!(err instanceof StaleHead)) throw err
      this.#heads?.clear()
      moved = await this.#integrate(false)
    }
    this.#integrated?.inc(moved)
    return moved
  }

  async #integrate(knownHeads: boolean): Promise<number> {
    const heads = this.#heads
    let next: HeadRow[] = []
    const moved = await this.#o.db.transaction(
      async (tx) => {
        if (!heads) await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [SEQUENCER_LOCK])
        // The bodies are read to hash them here (RFC 6962: SHA-256 of 0x00 ‖ the body's UTF-8
        // bytes): SHA-256 in the embedded database's WebAssembly cost several times what it does
        // in Node. They are not sent back: the write below moves them from the queue itself.
        const { rows } = await tx.query<{ id: number; log: string; body: string }>(
          'SELECT id, log, body FROM audit.queue ORDER BY id LIMIT $1',
          [this.#o.batch],
        )
        if (rows.length === 0) return 0
        const byLog = new Map<string, QueuedLeaf[]>()
        for (const { id, log, body } of rows) {
          const queued = { id, hash: leafHashOfText(body) }
          const leaves = byLog.get(log)
          if (leaves) leaves.push(queued)
          else byLog.set(log, [queued])
        }
        const logs = [...byLog.keys()].sort()
        const known = knownHeads ? logs.map((log) => heads?.get(log)) : undefined
        const cached = known?.every((h): h is HeadRow => h !== undefined) ? known : undefined
        const started = await startIntegration(tx, byLog, cached ?? (await lockHeads(tx, logs)))
        if (cached) await movedEveryHead(started.written, logs.length)
        // COMMIT leaves right behind the write (the transaction still fails if the write does).
        else started.written.catch(() => {})
        next = started.next
        return rows.length
      },
      { role: SEQUENCER_ROLE, genericPlans: true },
    )
    if (heads) this.#remember(heads, next)
    return moved
  }

  /** Keeps the heads just committed, and no more than `knownHeads`: the least recently written go. */
  #remember(heads: Map<string, HeadRow>, written: readonly HeadRow[]) {
    for (const head of written) {
      // A log only grows: a smaller size is older news (from an integration that ended later).
      if ((heads.get(head.log)?.size ?? -1) > head.size) continue
      heads.delete(head.log) // the Map's order is then the order of writing
      heads.set(head.log, head)
    }
    const limit = this.#o.knownHeads ?? 4096
    for (const log of heads.keys()) {
      if (heads.size <= limit) break
      heads.delete(log)
    }
  }
}

/**
 * How the database refuses a write planned from a head that moved: its size check leaves a NULL
 * size (not_null_violation), or its events take indexes already taken (unique_violation).
 */
const REFUSED_HEAD = new Set(['23502', '23505'])

/** A write planned from a known head was refused: the head is not what this sequencer knew. */
class StaleHead extends Error {
  override name = 'StaleHead'
  constructor(what: string, cause?: unknown) {
    super(`audit log head ${what}`, { cause })
  }
}

/**
 * Waits for a write planned from known heads (on the sole writer it has run by now: no round
 * trip) and checks that it moved every one of them; a refused or missing head is a StaleHead.
 */
async function movedEveryHead(written: Promise<QueryResult<unknown>>, heads: number) {
  let moved: QueryResult<unknown>
  try {
    moved = await written
  } catch (err) {
    if (REFUSED_HEAD.has((err as { code?: string }).code ?? ''))
      throw new StaleHead('moved since this sequencer wrote it', err)
    throw err
  }
  if (moved.rowCount !== heads) throw new StaleHead('is gone')
}
