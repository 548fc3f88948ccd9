import { AsyncLocalStorage } from 'node:async_hooks'
import { PGlite } from '@electric-sql/pglite'
import { openingOf } from './begin.ts'
import { IssuedStatements } from './issued.ts'
import { lockDataDir } from './lock.ts'
import { assertIdentifier } from './names.ts'
import { type CheckpointPolicy, startCheckpoints } from './pglite-checkpoint.ts'
import { durableDataDir } from './pglite-durable.ts'
import { startVacuums, type VacuumPolicy } from './pglite-vacuum.ts'
import type { WalSync } from './pglite-wal-sync.ts'
import { PgliteWire } from './pglite-wire.ts'
import { takePiggyback } from './piggyback.ts'
import { typeParsers } from './postgres.ts'
import { type Sql, sqlText } from './prepared.ts'
import type {
  Db,
  NotificationHandler,
  QueryResult,
  SqlValue,
  Transaction,
  TransactionOptions,
} from './types.ts'

/**
 * Every plan is made for the statement's parameters, as on the server engine (where `pg` sends
 * unnamed statements): a cached statement skips parsing, not planning, so a generic plan can never
 * be worse for some parameters (a cursor's `id > $3`) than the plan PostgreSQL would make for them.
 */
const PLAN_SETTINGS = ['-c', 'plan_cache_mode=force_custom_plan']

/**
 * A transaction of fixed-shape statements (TransactionOptions.genericPlans) plans each once, not on
 * every execution (the audit sequencer's write: 0.2–0.5 ms of planning, for 1–1.5 ms of work, on
 * every integration). Local to the transaction.
 */
const GENERIC_PLANS = { sql: 'SET LOCAL plan_cache_mode = force_generic_plan' }

/**
 * A new WAL segment file is created by writing its last byte, not by filling 16 MB with zeros
 * through Emscripten's file system on the request path (a stop of about 50 ms each). Durability
 * is the same: the file is synced like any other (pglite-durable.ts).
 */
const WAL_SETTINGS = ['-c', 'wal_init_zero=off']

/**
 * PGlite has one connection: a query on the database issued from inside a transaction's own
 * callback would wait for that transaction forever. Such calls fail fast instead.
 */
const insideTransaction = new AsyncLocalStorage<true>()

export class NestedQueryError extends Error {
  override name = 'NestedQueryError'
  constructor() {
    super(
      'query on the database from inside a transaction: use the transaction handle (PGlite has one connection)',
    )
  }
}

/** A synchronous statement as a promise (its error a rejection). */
function settled<T>(run: () => T): Promise<T> {
  try {
    return Promise.resolve(run())
  } catch (err) {
    return Promise.reject(err)
  }
}

/**
 * The one connection's turns: one transaction, or one statement, at a time, in the order asked.
 * Not PGlite's own transaction mutex (async-mutex): through it, the objects of every transaction,
 * its result rows too, survived young-generation collections and were promoted to the old
 * generation, to be found only by the next full collection. Measured with two callers reading ten
 * rows in a loop (`--trace-gc-nvp`): 3.8 MB promoted per scavenge and 7–8 ms pauses with PGlite's
 * mutex, 40 kB and 0.6 ms with this chain.
 */
class Turns {
  #last: Promise<unknown> = Promise.resolve()

  take<T>(work: () => Promise<T>): Promise<T> {
    const turn = this.#last.then(work)
    this.#last = turn.catch(() => {})
    return turn
  }
}

/**
 * Embedded PostgreSQL (WASM) in this process: same SQL, roles and row-level security. Statements
 * go through PgliteWire (node-postgres's protocol code, one crossing per statement or batch), and
 * nothing else uses PGlite's query interface, so `Turns` alone decides who has the connection.
 * PGlite's syncToFs is never called: it does nothing for the node file system (NODEFS writes
 * through to the host's files, synced at commit: pglite-durable.ts) nor in memory.
 */
export class PgliteDb implements Db {
  readonly engine = 'pglite' as const
  readonly soleWriter = true
  /** Its one connection, held, would keep every other transaction waiting (held-read.ts). */
  readonly holdsReads = false
  readonly #pg: PGlite
  readonly #wire: PgliteWire
  readonly #turns = new Turns()
  #closing: Promise<void> | undefined
  /** Statements and transactions asked for by callers (not by maintenance): activity. */
  #used = 0
  readonly #release: () => void
  /** On disk: the WAL syncs every caller waits for before it hears of its statements. */
  readonly #wal: WalSync | undefined
  #stopMaintenance: () => Promise<void> = async () => {}
  readonly #handlers = new Map<string, Set<NotificationHandler>>()

  private constructor(pg: PGlite, release: () => void, wal?: WalSync) {
    this.#pg = pg
    this.#release = release
    this.#wal = wal
    this.#wire = new PgliteWire(pg, typeParsers)
    this.#wire.onNotification = ({ channel, payload }) => {
      for (const h of this.#handlers.get(channel) ?? []) h(payload)
    }
  }

  /**
   * `dataDir` undefined means in memory (tests). A data directory belongs to one process at a
   * time, whoever opens it (the server, or a CLI command): it is locked until close(), and a
   * directory in use throws DataDirLocked. On disk, checkpoints run as `checkpoints` says
   * (pglite-checkpoint.ts), and vacuum and analyze as `vacuum` says (pglite-vacuum.ts).
   */
  static async open(
    dataDir?: string,
    options: { checkpoints?: CheckpointPolicy; vacuum?: VacuumPolicy } = {},
  ): Promise<PgliteDb> {
    const release = dataDir ? lockDataDir(dataDir) : () => {}
    try {
      // On disk, a commit returns once it is durable (pglite-durable.ts); in memory (tests
      // without a directory) there is nothing to sync.
      const durable = dataDir ? durableDataDir(dataDir) : undefined
      const pg = await PGlite.create({
        dataDir,
        fs: durable?.fs,
        startParams: [
          ...(durable?.startParams ?? PGlite.defaultStartParams),
          ...PLAN_SETTINGS,
          ...(durable ? WAL_SETTINGS : []),
        ],
      })
      const db = new PgliteDb(pg, release, durable?.wal)
      if (durable) {
        // Simple protocol, not prepared: maintenance statements (a VACUUM per table) must not push
        // the requests' statements out of the wire's cache of prepared statements.
        const run = (sql: string) =>
          db.#exclusive(() => db.#wire.script(sql).at(-1) ?? { rows: [], rowCount: 0 })
        const stopCheckpoints = startCheckpoints(run, options.checkpoints)
        const stopVacuums = startVacuums(run, () => db.#used, options.vacuum)
        db.#stopMaintenance = async () => {
          await Promise.all([stopCheckpoints(), stopVacuums()])
        }
      }
      return db
    } catch (err) {
      release()
      throw err
    }
  }

  /** Runs `work` on the connection once no transaction has it (autocommit). */
  #exclusive<T>(work: () => T): Promise<T> {
    if (insideTransaction.getStore()) return Promise.reject(new NestedQueryError())
    return this.#turns.take(async () => {
      if (this.#pg.closed) throw new Error('the embedded database is closed')
      return work()
    })
  }

  query<R = Record<string, unknown>>(
    sql: Sql,
    params?: readonly SqlValue[],
  ): Promise<QueryResult<R>> {
    if (insideTransaction.getStore()) return Promise.reject(new NestedQueryError())
    this.#used++
    return this.#durable(this.#exclusive(() => this.#wire.query<R>(sqlText(sql), params)))
  }

  /**
   * `p` once what it saw is on disk: WAL written by it, or by others before it, and not yet
   * synced is synced first (pglite-wal-sync.ts). A failure waits too: its error may tell of a row
   * another transaction committed (a unique violation).
   */
  #durable<T>(p: Promise<T>): Promise<T> {
    const wal = this.#wal
    if (!wal) return p
    return p.then(
      (value) => {
        const synced = wal.durable()
        return synced ? synced.then(() => value) : value
      },
      (err) => {
        const synced = wal.durable()
        if (!synced) throw err
        return synced.then(() => Promise.reject(err))
      },
    )
  }

  /**
   * Runs `fn` in one transaction. Reads are never held for their audit event (held-read.ts): on
   * the one connection, a held read would keep every other transaction waiting while its holder
   * works, and there is no round trip to save.
   */
  transaction<T>(
    fn: (tx: Transaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    if (insideTransaction.getStore()) return Promise.reject(new NestedQueryError())
    this.#used++
    const piggyback = takePiggyback()
    const wire = this.#wire
    const ended = this.#turns.take(() =>
      insideTransaction.run(true, async () => {
        if (this.#pg.closed) throw new Error('the embedded database is closed')
        const issued = new IssuedStatements()
        // A statement runs when it is issued: the order of the calls is the order of execution.
        const tx: Transaction = {
          query: (sql, params) => issued.track(settled(() => wire.query(sqlText(sql), params))),
          exec: (sql) => issued.track(settled(() => void wire.script(sql))),
        }
        try {
          // BEGIN, mode, piggybacked read, role and settings in one crossing.
          const opening = openingOf(options, piggyback?.sql)
          const results = wire.batch([
            ...opening.statements,
            ...opening.settings.map(([name, value]) => ({
              sql: 'SELECT set_config($1, $2, true)',
              params: [name, value],
            })),
            ...(options.genericPlans ? [GENERIC_PLANS] : []),
          ])
          if (piggyback) {
            const row = results[opening.piggybackAt]?.rows[0]
            if (!row) throw new Error('the piggybacked read returned no row')
            piggyback.deliver(row)
          }
          const result = await fn(tx)
          // Statements the caller did not wait for must succeed before the commit.
          await issued.all()
          const [ended] = wire.batch([{ sql: 'COMMIT' }])
          if (ended?.command !== 'COMMIT')
            throw new Error(`transaction ended with ${ended?.command}`)
          return result
        } catch (err) {
          if (wire.inTransaction) {
            try {
              wire.batch([{ sql: 'ROLLBACK' }])
            } catch {
              // Nothing more to do on the one connection: the next statement will say.
            }
          }
          throw err
        }
      }),
    )
    // Its caller hears of it once it is on disk.
    const done = this.#durable(ended)
    // No-op once delivered; otherwise the reader learns the transaction never got that far.
    if (piggyback) done.catch((err) => piggyback.fail(err))
    return done
  }

  async listen(channel: string, handler: NotificationHandler) {
    assertIdentifier('channel', channel)
    let set = this.#handlers.get(channel)
    if (set) set.add(handler)
    else {
      set = new Set([handler])
      this.#handlers.set(channel, set)
      try {
        await this.#exclusive(() => this.#wire.script(`LISTEN ${channel}`))
      } catch (err) {
        this.#handlers.delete(channel)
        throw err
      }
    }
    return async () => {
      const current = this.#handlers.get(channel)
      if (!current?.delete(handler) || current.size > 0) return
      this.#handlers.delete(channel)
      await this.#exclusive(() => this.#wire.script(`UNLISTEN ${channel}`)).catch(() => {})
    }
  }

  async notify(channel: string, payload: string) {
    await this.query('SELECT pg_notify($1, $2)', [assertIdentifier('channel', channel), payload])
  }

  /** Waits for the transactions and statements asked for before it; anything asked later fails. */
  close(): Promise<void> {
    // Once: a second close while the first is in progress waits for the same.
    this.#closing ??= (async () => {
      try {
        await this.#stopMaintenance()
        this.#handlers.clear()
        // After the transaction that has the connection, if any.
        await this.#turns.take(() => this.#pg.close())
        await this.#wal?.idle()
      } finally {
        this.#release()
      }
    })()
    return this.#closing
  }
}
