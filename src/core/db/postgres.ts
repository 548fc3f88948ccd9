import pg from 'pg'
import { assertIdentifier } from './names.ts'
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

const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return parseInt8
    return pg.types.getTypeParser(oid, format)
  },
}

type Client = pg.PoolClient | pg.Client

async function run<R>(
  client: Client | pg.Pool,
  sql: string,
  params?: readonly SqlValue[],
): Promise<QueryResult<R>> {
  const res = await client.query(sql, params as unknown[] | undefined)
  return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 }
}

/** Setting names and values that may be written into SQL text as they are (no quoting needed). */
const PLAIN_SETTING_NAME = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/
const PLAIN_SETTING_VALUE = /^[A-Za-z0-9._:@/-]{0,256}$/

/**
 * BEGIN with the transaction's role and settings in one round trip: a multi-statement simple
 * query (`BEGIN …; SET LOCAL ROLE …; SELECT set_config(…)`). Only names and values of a plain
 * character set are written into the text; anything else is set with a parameter afterwards.
 */
export async function beginTransaction(tx: Transaction, options: TransactionOptions = {}) {
  const isolation = options.isolation ?? 'read committed'
  const statements = [`BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}`]
  if (options.role) statements.push(`SET LOCAL ROLE ${assertIdentifier('role', options.role)}`)
  const rest: [string, string][] = []
  const inline: string[] = []
  for (const [name, value] of Object.entries(options.settings ?? {})) {
    if (PLAIN_SETTING_NAME.test(name) && PLAIN_SETTING_VALUE.test(value))
      inline.push(`set_config('${name}', '${value}', true)`)
    else rest.push([name, value])
  }
  if (inline.length > 0) statements.push(`SELECT ${inline.join(', ')}`)
  await tx.query(statements.join('; '))
  for (const [name, value] of rest) await tx.query('SELECT set_config($1, $2, true)', [name, value])
}

/** Role and settings local to the current transaction. */
export async function applyLocals(tx: Transaction, options: TransactionOptions) {
  if (options.role) await tx.query(`SET LOCAL ROLE ${assertIdentifier('role', options.role)}`)
  for (const [name, value] of Object.entries(options.settings ?? {})) {
    await tx.query('SELECT set_config($1, $2, true)', [name, value])
  }
}

export interface PostgresOptions {
  url: string
  max?: number
  applicationName?: string
}

export class PostgresDb implements Db {
  readonly engine = 'postgres' as const
  readonly #pool: pg.Pool
  readonly #url: string
  #listener: pg.Client | undefined
  #listenerReady: Promise<pg.Client> | undefined
  readonly #handlers = new Map<string, Set<NotificationHandler>>()

  constructor(options: PostgresOptions) {
    this.#url = options.url
    this.#pool = new pg.Pool({
      connectionString: options.url,
      max: options.max ?? 10,
      application_name: options.applicationName ?? 'dflare',
      types: typeParsers,
    })
    // An idle client that errors (e.g. server restart) must not crash the process.
    this.#pool.on('error', () => {})
  }

  query<R = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]) {
    return run<R>(this.#pool, sql, params)
  }

  async transaction<T>(
    fn: (tx: Transaction) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T> {
    const client = await this.#pool.connect()
    const tx: Transaction = {
      query: (sql, params) => run(client, sql, params),
      exec: async (sql) => {
        await client.query(sql)
      },
    }
    let broken = false
    try {
      await beginTransaction(tx, options)
      const result = await fn(tx)
      await client.query('COMMIT')
      return result
    } catch (err) {
      try {
        await client.query('ROLLBACK')
      } catch {
        broken = true
      }
      throw err
    } finally {
      client.release(broken)
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

  async close() {
    const listener = this.#listener
    this.#listener = undefined
    this.#listenerReady = undefined
    this.#handlers.clear()
    await listener?.end().catch(() => {})
    await this.#pool.end()
  }
}
