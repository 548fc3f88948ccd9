import { AsyncLocalStorage } from 'node:async_hooks'
import { PGlite, type Transaction as PGliteTx } from '@electric-sql/pglite'
import { claimHold, type EndHeld, HeldRead, releaseHeldRead } from './held-read.ts'
import { IssuedStatements } from './issued.ts'
import { lockDataDir } from './lock.ts'
import { assertIdentifier } from './names.ts'
import { durableDataDir } from './pglite-durable.ts'
import { takePiggyback } from './piggyback.ts'
import { beginStatements, parseInt8 } from './postgres.ts'
import type {
  Db,
  NotificationHandler,
  QueryResult,
  SqlValue,
  Transaction,
  TransactionOptions,
} from './types.ts'

const INT8_OID = 20
const BYTEA_OID = 17

type Runner = Pick<PGlite, 'query'> | PGliteTx

async function run<R>(
  runner: Runner,
  sql: string,
  params?: readonly SqlValue[],
): Promise<QueryResult<R>> {
  const res = await runner.query<R>(sql, params as unknown[] | undefined)
  return { rows: res.rows, rowCount: res.affectedRows || res.rows.length }
}

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

/** Embedded PostgreSQL (WASM) in this process: same SQL, roles and row-level security. */
export class PgliteDb implements Db {
  readonly engine = 'pglite' as const
  readonly #pg: PGlite
  readonly #release: () => void

  private constructor(pg: PGlite, release: () => void) {
    this.#pg = pg
    this.#release = release
  }

  /**
   * `dataDir` undefined means in memory (tests). A data directory belongs to one process at a
   * time, whoever opens it (the server, or a CLI command): it is locked until close(), and a
   * directory in use throws DataDirLocked.
   */
  static async open(dataDir?: string): Promise<PgliteDb> {
    const release = dataDir ? lockDataDir(dataDir) : () => {}
    try {
      const pg = await PGlite.create({
        dataDir,
        // On disk, a commit returns once it is durable (pglite-durable.ts); in memory (tests
        // without a directory) there is nothing to sync.
        ...(dataDir ? durableDataDir(dataDir) : {}),
        parsers: {
          [INT8_OID]: parseInt8,
          // Match `pg`, which returns bytea as a Buffer.
          [BYTEA_OID]: (text: string) => Buffer.from(text.slice(2), 'hex'),
        },
      })
      return new PgliteDb(pg, release)
    } catch (err) {
      release()
      throw err
    }
  }

  query<R = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]) {
    if (insideTransaction.getStore()) return Promise.reject(new NestedQueryError())
    const released = releaseHeldRead()
    if (released) return released.then(() => run<R>(this.#pg, sql, params))
    return run<R>(this.#pg, sql, params)
  }

  /**
   * Runs `fn` in one transaction. A held read (core/db/held-read.ts) resolves with `fn`'s result
   * while PGlite's transaction stays open, waiting for the holder.
   */
  transaction<T>(
    fn: (tx: Transaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    if (insideTransaction.getStore()) return Promise.reject(new NestedQueryError())
    const released = releaseHeldRead()
    if (released) return released.then(() => this.transaction(fn, options))
    const hold = claimHold(options.readOnly)
    const piggyback = takePiggyback()
    let handOver: ((result: T) => void) | undefined
    const handedOver = hold && new Promise<T>((resolve) => (handOver = resolve))
    const done = this.#pg.transaction((inner) =>
      insideTransaction.run(true, async () => {
        const issued = new IssuedStatements()
        const tx: Transaction = {
          query: (sql, params) => issued.track(run(inner, sql, params)),
          exec: (sql) => issued.track(inner.exec(sql).then(() => undefined)),
        }
        // Mode, piggybacked read, role and settings in one call (each call crosses into WASM).
        const begin = beginStatements(options, piggyback?.sql, 'SET TRANSACTION', hold?.section)
        if (begin.text) {
          let results: Awaited<ReturnType<PGliteTx['exec']>>
          try {
            results = await inner.exec(begin.text)
          } catch (err) {
            piggyback?.fail(err)
            throw err
          }
          if (piggyback) {
            const row = results[begin.piggybackAt]?.rows[0]
            if (!row) {
              const err = new Error('the piggybacked read returned no row')
              piggyback.fail(err)
              throw err
            }
            piggyback.deliver(row)
          }
        }
        for (const [name, value] of begin.params)
          await tx.query('SELECT set_config($1, $2, true)', [name, value])
        const result = await fn(tx)
        // Statements the caller did not wait for must succeed before the commit.
        await issued.all()
        if (!hold) return result
        // Held: the result leaves now, and the transaction ends as the holder says.
        const write = await new Promise<Parameters<EndHeld>[0]>((end) => {
          hold.park(
            new HeldRead((w) => {
              end(w)
              return done.then(() => {})
            }),
          )
          handOver!(result)
        })
        if (!write) {
          await inner.rollback()
          return result
        }
        await inner.exec(`ROLLBACK TO SAVEPOINT ${hold.section}`)
        await write(tx)
        await issued.all()
        return result
      }),
    )
    // No-op once delivered; otherwise the reader learns the transaction never got that far.
    if (piggyback) done.catch((err) => piggyback.fail(err))
    if (!handedOver) return done
    // Whichever comes first: the held result, or the transaction's failure before it.
    return Promise.race([handedOver, done])
  }

  async listen(channel: string, handler: NotificationHandler) {
    const unsubscribe = await this.#pg.listen(assertIdentifier('channel', channel), handler)
    return async () => {
      await unsubscribe()
    }
  }

  async notify(channel: string, payload: string) {
    await this.query('SELECT pg_notify($1, $2)', [assertIdentifier('channel', channel), payload])
  }

  async close() {
    try {
      if (!this.#pg.closed) await this.#pg.close()
    } finally {
      this.#release()
    }
  }
}
