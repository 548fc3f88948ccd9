import { Writable } from 'node:stream'
import pg from 'pg'
import { beginStatements } from './begin.ts'
import { claimHold, HeldRead, releaseHeldRead } from './held-read.ts'
import { IssuedStatements } from './issued.ts'
import { assertIdentifier } from './names.ts'
import { takePiggyback } from './piggyback.ts'
import { prepared, type Sql } from './prepared.ts'
import {
  type Db,
  LISTENER_LOST,
  type NotificationHandler,
  type QueryResult,
  type SqlValue,
  type Transaction,
  type TransactionOptions,
} from './types.ts'

const INT8_OID = 20

/** int8 as a JS number (both engines agree); values past 2^53 would be a bug, so they throw. */
export function parseInt8(text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n))
    throw new RangeError(`int8 value ${text} exceeds the safe integer range`)
  return n
}

/** Result parsing shared by both engines (PGlite speaks to node-postgres's parser too). */
export const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return parseInt8
    return pg.types.getTypeParser(oid, format)
  },
}

type Client = pg.PoolClient | pg.Client

async function run<R>(
  client: Client | pg.Pool,
  sql: Sql,
  params?: readonly SqlValue[],
): Promise<QueryResult<R>> {
  const res =
    typeof sql === 'string'
      ? await client.query(sql, params as unknown[] | undefined)
      : await client.query({ name: sql.name, text: sql.text, values: params as unknown[] })
  return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 }
}

/**
 * COMMIT, queued behind whatever is still outstanding (`pending`); if any of it failed the server
 * turns the COMMIT into a ROLLBACK, and the failure is thrown here. A statement that already
 * failed without reaching the server (a parameter that cannot be encoded) left the server's
 * transaction intact: then no COMMIT is sent at all.
 */
async function commit(
  client: Client,
  batch: () => void,
  issued: IssuedStatements,
  pending: () => Promise<unknown>,
) {
  issued.throwIfFailed()
  batch()
  const done = client.query('COMMIT')
  done.catch(() => {})
  await pending()
  const { command } = await done
  if (command !== 'COMMIT') throw new Error(`transaction ended with ${command}`)
}

/** Rolls back; false when even that failed (the connection is then broken). */
async function rollback(client: Client): Promise<boolean> {
  try {
    await client.query('ROLLBACK')
    return true
  } catch {
    return false
  }
}

/** The client's socket, to send several statements in one write (undefined if not reachable). */
function streamOf(client: pg.PoolClient): Writable | undefined {
  const stream = (client as unknown as { connection?: { stream?: unknown } }).connection?.stream
  return stream instanceof Writable ? stream : undefined
}

export interface PostgresOptions {
  url: string
  max?: number
  applicationName?: string
}

export class PostgresDb implements Db {
  readonly engine = 'postgres' as const
  readonly soleWriter = false
  readonly holdsReads = true
  readonly #pool: pg.Pool
  readonly #url: string
  #listener: pg.Client | undefined
  #listenerReady: Promise<pg.Client> | undefined
  readonly #handlers = new Map<string, Set<NotificationHandler>>()
  #closed = false

  constructor(options: PostgresOptions) {
    this.#url = options.url
    this.#pool = new pg.Pool({
      connectionString: options.url,
      max: options.max ?? 10,
      application_name: options.applicationName ?? 'dflare',
      types: typeParsers,
      // Statements go out without waiting for the previous answer (see transaction()).
      pipeline: true,
    } as pg.PoolConfig)
    // An idle client that errors (e.g. server restart) must not crash the process.
    this.#pool.on('error', () => {})
  }

  query<R = Record<string, unknown>>(sql: Sql, params?: readonly SqlValue[]) {
    const released = releaseHeldRead()
    if (released) return released.then(() => run<R>(this.#pool, sql, params))
    return run<R>(this.#pool, sql, params)
  }

  /**
   * The connection is pipelined: statements are sent without waiting for the previous answer.
   * BEGIN (with role and settings) goes out with the caller's first statement when the caller
   * allows it (`pipelineBegin`), and COMMIT goes out right behind statements the caller did not
   * wait for; a result is only handed over once BEGIN succeeded, and the transaction commits only
   * if every statement it issued succeeded. A held read (core/db/held-read.ts) is handed over
   * open, its connection still taken.
   */
  async transaction<T>(
    fn: (tx: Transaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    // Nothing is held in almost every call: no await (and no extra tick) then.
    const released = releaseHeldRead()
    if (released) await released
    const hold = claimHold(options.readOnly)
    const piggyback = takePiggyback()
    let begin: ReturnType<typeof beginStatements>
    let client: pg.PoolClient
    try {
      // Validates before a connection is taken.
      begin = beginStatements(options, piggyback?.sql, hold?.section)
      client = await this.#pool.connect()
    } catch (err) {
      piggyback?.fail(err)
      throw err
    }
    const issued = new IssuedStatements()
    let begun: Promise<unknown> = Promise.resolve()
    // A result is handed over only once BEGIN succeeded, and BEGIN's error wins over the
    // "transaction is aborted" error of the statements pipelined behind it.
    const gated = <R>(p: Promise<R>): Promise<R> =>
      issued.track(
        p.then(
          async (r) => {
            await begun
            return r
          },
          async (err) => {
            await begun
            throw err
          },
        ),
      )
    // Statements issued together (in one run of the event loop) leave in one write.
    const socket = streamOf(client)
    let corked = false
    const batch = () => {
      if (!socket || corked) return
      corked = true
      socket.cork()
      process.nextTick(() => {
        corked = false
        socket.uncork()
      })
    }
    const tx: Transaction = {
      query: (sql, params) => {
        batch()
        return gated(run(client, sql, params))
      },
      exec: (sql) => {
        batch()
        return gated(client.query(sql).then(() => undefined))
      },
    }
    let broken = false
    let held = false
    try {
      // With pipelineBegin, BEGIN and the first statement leave in one write.
      batch()
      const sent: Promise<unknown>[] = [client.query(begin.head)]
      if (piggyback) {
        const { name, text } = prepared(piggyback.sql)
        const read = client.query({ name, text })
        read.then(
          ({ rows }) => {
            if (rows[0]) piggyback.deliver(rows[0])
            else piggyback.fail(new Error('the piggybacked read returned no row'))
          },
          (err) => piggyback.fail(err),
        )
        sent.push(read)
      }
      if (begin.tail) sent.push(client.query(begin.tail))
      for (const [name, value] of begin.params)
        sent.push(run(client, 'SELECT set_config($1, $2, true)', [name, value]))
      begun = Promise.all(sent)
      begun.catch(() => {})
      if (!options.pipelineBegin) await begun
      const result = await fn(tx)
      if (hold) {
        await Promise.all([begun, issued.all()])
        const section = hold.section
        hold.park(
          new HeldRead(async (write) => {
            let lost = false
            try {
              if (!write) {
                lost = !(await rollback(client))
                return
              }
              batch()
              tx.exec(`ROLLBACK TO SAVEPOINT ${section}`).catch(() => {})
              await write(tx)
              await commit(client, batch, issued, () => issued.all())
            } catch (err) {
              lost = !(await rollback(client))
              throw err
            } finally {
              client.release(lost)
            }
          }),
        )
        held = true
        return result
      }
      await commit(client, batch, issued, () => Promise.all([begun, issued.all()]))
      return result
    } catch (err) {
      piggyback?.fail(err) // no-op once delivered
      broken = !(await rollback(client))
      throw err
    } finally {
      if (!held) client.release(broken)
    }
  }

  async listen(channel: string, handler: NotificationHandler) {
    assertIdentifier('channel', channel)
    const client = await this.#listenerClient()
    let set = this.#handlers.get(channel)
    if (!set) {
      set = new Set()
      this.#handlers.set(channel, set)
      await client.query(`LISTEN ${channel}`)
    }
    set.add(handler)
    return async () => {
      const current = this.#handlers.get(channel)
      if (!current) return
      current.delete(handler)
      if (current.size === 0) {
        this.#handlers.delete(channel)
        await this.#listener?.query(`UNLISTEN ${channel}`).catch(() => {})
      }
    }
  }

  async notify(channel: string, payload: string) {
    await this.query('SELECT pg_notify($1, $2)', [assertIdentifier('channel', channel), payload])
  }

  #listenerClient(): Promise<pg.Client> {
    this.#listenerReady ??= (async () => {
      const client = new pg.Client({ connectionString: this.#url, types: typeParsers })
      client.on('notification', (msg) => {
        for (const h of this.#handlers.get(msg.channel) ?? []) h(msg.payload ?? '')
      })
      // A lost listener connection is reported to every subscriber as a special payload so that
      // caches relying on notifications can fail closed (drop their state) instead of going stale.
      client.on('error', () => {
        this.#listener = undefined
        this.#listenerReady = undefined
        for (const set of this.#handlers.values()) for (const h of set) h(LISTENER_LOST)
        this.#handlers.clear()
      })
      await client.connect()
      this.#listener = client
      return client
    })()
    return this.#listenerReady
  }

  /** Ends the pool and the listener; closing again does nothing. */
  async close() {
    if (this.#closed) return
    this.#closed = true
    const listener = this.#listener
    this.#listener = undefined
    this.#listenerReady = undefined
    this.#handlers.clear()
    await listener?.end().catch(() => {})
    await this.#pool.end()
  }
}
