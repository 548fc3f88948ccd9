import type { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import pgUtils from 'pg/lib/utils.js'
import { type DatabaseError, serialize } from 'pg-protocol'
import type { NotificationResponseMessage } from 'pg-protocol/dist/messages.js'
import { Parser } from 'pg-protocol/dist/parser.js'
import type { QueryResult, SqlValue } from './types.ts'

/**
 * PostgreSQL's wire protocol spoken to PGlite directly, one crossing into WebAssembly per
 * statement or batch of statements. PGlite's own `query` crosses six times (Parse, Describe, Bind, Describe, Execute,
 * Sync), parses the statement again every time, and reads the answer with a parser that copies
 * every field. Here node-postgres does both ends, as it does for the `pg` engine: its serializer
 * writes the messages, its parser and `Result` read the answer, so rows, parameters and errors
 * (its `DatabaseError`, with the SQLSTATE in `code`) are exactly what the server engine gives.
 *
 * Each statement text is parsed by PostgreSQL once, as a named prepared statement, kept in a
 * bounded least-recently-used cache. PostgreSQL re-plans a prepared statement whenever what it
 * depends on changes (tables, role, search_path); what it cannot survive is its result's shape
 * changing (`SELECT *` after ALTER TABLE). PGlite has one connection, held by this process alone,
 * so every change of schema passes through here: any CREATE, ALTER or DROP forgets every statement,
 * and a statement PostgreSQL still rejects as stale is forgotten and, outside a transaction, run
 * again once.
 *
 * The caller serialises access (PGlite's transaction mutex); each call here is synchronous.
 */

/** Statement texts kept prepared; past this, the least recently used is closed. */
export const STATEMENT_CACHE_SIZE = 256

/** What `pg.Result` does that its type declarations leave out. */
interface ResultBuilder extends pg.QueryResult {
  addFields(fields: unknown[]): void
  parseRow(values: unknown[]): Record<string, unknown>
  addRow(row: Record<string, unknown>): void
  addCommandComplete(msg: { text: string }): void
}

/** How result values are parsed by type (the `types` option of node-postgres). */
export interface TypeParsers {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown
}

/** Transaction status from ReadyForQuery: idle, in a transaction, in a failed transaction. */
type Status = 'I' | 'T' | 'E'

export interface ScriptResult extends QueryResult<Record<string, unknown>> {
  command: string
}

export interface Statement {
  sql: string
  params?: readonly SqlValue[]
  /** A text that will not come again (e.g. it names a savepoint of its own): not prepared. */
  unique?: boolean
}

function resultOf(r: pg.QueryResult): ScriptResult {
  return { command: r.command, rows: r.rows, rowCount: r.rowCount ?? 0 }
}

export interface Notification {
  channel: string
  payload: string
}

interface Answer {
  results: ResultBuilder[]
  error: DatabaseError | undefined
  notifications: Notification[]
}

/** Tags of statements that change the schema: prepared statements may then be stale. */
const SCHEMA_CHANGE = /^(CREATE|ALTER|DROP) /

function isStale(err: DatabaseError): boolean {
  // 26000: the prepared statement is gone; 0A000 is also "feature not supported", so the message.
  return (
    err.code === '26000' ||
    (err.code === '0A000' && err.message.startsWith('cached plan must not change result type'))
  )
}

/** Wires made in this process: each names its statements apart (tests open several). */
let wires = 0

export class PgliteWire {
  /** Prefix of this wire's statement names. */
  readonly prefix = `dflare_${++wires}_`
  readonly #pg: PGlite
  readonly #types: TypeParsers
  readonly #limit: number
  /** Statement text → prepared name; Map order is recency (oldest first). */
  readonly #prepared = new Map<string, string>()
  /** Names to close with the next exchange that starts outside a transaction. */
  #closing: string[] = []
  #named = 0
  #status: Status = 'I'
  onNotification: (n: Notification) => void = () => {}

  constructor(pg: PGlite, types: TypeParsers, limit = STATEMENT_CACHE_SIZE) {
    this.#pg = pg
    this.#types = types
    this.#limit = limit
  }

  /** True while a transaction block is open (as of the last answer). */
  get inTransaction(): boolean {
    return this.#status !== 'I'
  }

  /** Statements currently prepared (for tests). */
  get preparedCount(): number {
    return this.#prepared.size
  }

  /** One statement with parameters (extended protocol). */
  query<R>(sql: string, params: readonly SqlValue[] = []): QueryResult<R> {
    return this.batch([{ sql, params }])[0] as QueryResult<R>
  }

  /**
   * Statements in one crossing (extended protocol, one Sync): as in a pipeline, after a failure
   * the rest are skipped and the first error is thrown; inside a transaction block it is then
   * failed. A `unique` statement (a name of its own in the text) is not prepared for later.
   */
  batch(statements: readonly Statement[]): ScriptResult[] {
    const known = statements.map((s) => (s.unique ? undefined : this.#prepared.get(s.sql)))
    try {
      return this.#batch(statements, known)
    } catch (err) {
      // A stale statement outside a transaction: nothing ran, so run it again, parsed afresh.
      if (known.some(Boolean) && !this.inTransaction && isStale(err as DatabaseError))
        return this.#batch(statements, [])
      throw err
    }
  }

  /**
   * A script of statements without parameters (simple protocol): one result per statement, with
   * its command tag (COMMIT of a failed transaction answers ROLLBACK).
   */
  script(sql: string): ScriptResult[] {
    const answer = this.#exchange([serialize.query(sql)], [])
    if (answer.error) throw answer.error
    return answer.results.map(resultOf)
  }

  #batch(statements: readonly Statement[], known: (string | undefined)[]): ScriptResult[] {
    const parts: Buffer[] = []
    // One entry per Parse sent, in order: what to remember once PostgreSQL confirms it.
    const parsing: ({ sql: string; name: string } | undefined)[] = []
    // A text twice in one batch (two settings) is parsed once.
    const fresh = new Map<string, string>()
    statements.forEach(({ sql, params = [], unique }, i) => {
      let name = known[i] ?? (unique ? undefined : fresh.get(sql))
      if (known[i]) {
        // Most recently used goes last.
        this.#prepared.delete(sql)
        this.#prepared.set(sql, known[i])
      } else if (!name) {
        name = unique ? '' : `${this.prefix}${++this.#named}`
        parts.push(serialize.parse({ name, text: sql, types: [] }))
        parsing.push(unique ? undefined : { sql, name })
        if (!unique) fresh.set(sql, name)
      }
      parts.push(
        serialize.bind({
          statement: name,
          values: params as unknown[],
          valueMapper: pgUtils.prepareValue,
        }),
        serialize.describe({ type: 'P' }),
        serialize.execute({}),
      )
    })
    const answer = this.#exchange(parts, parsing)
    if (answer.error) {
      // The statement that failed is the first without a result.
      const failed = statements[answer.results.length]
      if (failed && known[answer.results.length] && isStale(answer.error)) this.#forget(failed.sql)
      throw answer.error
    }
    return answer.results.map(resultOf)
  }

  /**
   * Sends `parts` and Sync as one message and reads the whole answer. `parsing` has one entry per
   * Parse in `parts`: a statement to cache once PostgreSQL confirms its Parse.
   */
  #exchange(
    parts: Buffer[],
    parsing: readonly ({ sql: string; name: string } | undefined)[],
  ): Answer {
    const closing =
      this.#status === 'I' && this.#closing.length > 0
        ? this.#closing.splice(0).map((name) => serialize.close({ type: 'S', name }))
        : []
    const message = Buffer.concat([...closing, ...parts, serialize.sync()])
    // The streaming variant, because the plain one also parses the whole answer with PGlite's
    // own parser. It runs synchronously; the chunks are views of WebAssembly memory, reused as
    // soon as each callback returns, so they are copied.
    const chunks: Buffer[] = []
    this.#pg
      .execProtocolRawStream(message, {
        syncToFs: false,
        onRawData: (bytes) => void chunks.push(Buffer.from(bytes)),
      })
      .catch(() => {}) // a failure shows as an answer without ReadyForQuery
    const answer: Answer = { results: [], error: undefined, notifications: [] }
    let ready = false
    let parsed = 0
    let current: ResultBuilder | undefined
    const result = () => {
      current ??= new pg.Result(
        undefined as unknown as string,
        this.#types as ConstructorParameters<typeof pg.Result>[1],
      ) as ResultBuilder
      return current
    }
    new Parser().parse(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), (msg) => {
      switch (msg.name) {
        case 'parseComplete': {
          const p = parsing[parsed++]
          if (p) this.#remember(p.sql, p.name)
          break
        }
        case 'rowDescription':
          result().addFields((msg as unknown as { fields: unknown[] }).fields)
          break
        case 'dataRow': {
          const r = result()
          r.addRow(r.parseRow((msg as unknown as { fields: unknown[] }).fields))
          break
        }
        case 'commandComplete': {
          const r = result()
          const { text } = msg as unknown as { text: string }
          r.addCommandComplete({ text })
          if (SCHEMA_CHANGE.test(text)) this.#forgetAll()
          answer.results.push(r)
          current = undefined
          break
        }
        case 'emptyQuery':
          answer.results.push(result())
          current = undefined
          break
        case 'error':
          answer.error ??= msg as DatabaseError
          break
        case 'notification': {
          const n = msg as NotificationResponseMessage
          answer.notifications.push({ channel: n.channel, payload: n.payload })
          break
        }
        case 'readyForQuery':
          this.#status = (msg as unknown as { status: Status }).status
          ready = true
          break
        default:
          // bindComplete, closeComplete, noData, notice, parameterStatus: nothing to keep.
          break
      }
    })
    if (!ready) throw new Error('the embedded database gave no complete answer')
    for (const n of answer.notifications) queueMicrotask(() => this.onNotification(n))
    return answer
  }

  #remember(sql: string, name: string) {
    // Parsed afresh after a stale statement (batch): the older name is closed.
    const older = this.#prepared.get(sql)
    if (older !== undefined && older !== name) this.#closing.push(older)
    this.#prepared.delete(sql)
    this.#prepared.set(sql, name)
    if (this.#prepared.size > this.#limit) {
      const [oldest, oldName] = this.#prepared.entries().next().value as [string, string]
      this.#prepared.delete(oldest)
      this.#closing.push(oldName)
    }
  }

  #forget(sql: string) {
    const name = this.#prepared.get(sql)
    if (name === undefined) return
    this.#prepared.delete(sql)
    this.#closing.push(name)
  }

  #forgetAll() {
    for (const name of this.#prepared.values()) this.#closing.push(name)
    this.#prepared.clear()
  }
}
