/** One small query interface over PostgreSQL (`pg`) and embedded PGlite. */
import type { Sql } from './prepared.ts'

export type { PreparedStatement, Sql } from './prepared.ts'
export { prepared } from './prepared.ts'

export type SqlValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | Date
  | Uint8Array
  | readonly unknown[]
  | Record<string, unknown>

export interface QueryResult<R> {
  rows: R[]
  rowCount: number
}

/** Anything that can run a parameterised statement: the database or an open transaction. */
export interface Queryable {
  query<R = Record<string, unknown>>(
    sql: Sql,
    params?: readonly SqlValue[],
  ): Promise<QueryResult<R>>
}

export interface TransactionOptions {
  /** `SET LOCAL ROLE` for the transaction, so grants and row-level security apply. */
  role?: string
  /** Transaction-local settings (`set_config(name, value, true)`), e.g. `dflare.tenant`. */
  settings?: Readonly<Record<string, string>>
  /** Isolation level; defaults to READ COMMITTED. */
  isolation?: 'read committed' | 'repeatable read' | 'serializable'
  /** `BEGIN … READ ONLY`: any write in the transaction fails. */
  readOnly?: boolean
  /**
   * The transaction's statements have a fixed shape, and one plan serves whatever their
   * parameters: an engine that keeps its statements prepared (PGlite, which otherwise plans every
   * execution afresh) plans each once and reuses the plan. No effect on PostgreSQL, where every
   * statement is sent unnamed and planned once anyway.
   */
  genericPlans?: boolean
  /**
   * Send BEGIN together with the first statement instead of waiting for it (PostgreSQL; one
   * round trip less). Only for transactions whose first statement is harmless should it ever run
   * on its own (a read, an idempotent upsert): if BEGIN itself failed, that statement would run
   * outside the transaction. Its result is never handed over unless BEGIN succeeded.
   */
  pipelineBegin?: boolean
}

/**
 * A statement need not be awaited: the transaction waits for every statement it issued before
 * it commits (on PostgreSQL the COMMIT goes out right behind them), and fails if any failed.
 */
export interface Transaction extends Queryable {
  /** Runs a multi-statement SQL script (no parameters), e.g. a migration. */
  exec(sql: string): Promise<void>
}

/** Payload delivered to listeners when their notification connection was lost: drop caches. */
export const LISTENER_LOST = '\u0000dflare:listener-lost'

export type NotificationHandler = (payload: string) => void

export interface Db extends Queryable {
  readonly engine: 'postgres' | 'pglite'
  /**
   * True when this handle is the only writer of its database and hears its own commits'
   * notifications before they return: the embedded PGlite (one process, one connection). What
   * it was last told on a channel is then the database's state (core/revisions.ts).
   */
  readonly soleWriter: boolean
  /**
   * Whether a read-only transaction can be held open for the request's audit event
   * (core/db/held-read.ts): the server engine only.
   */
  readonly holdsReads: boolean
  /** Runs `fn` in one transaction: commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T>
  /** Subscribes to a NOTIFY channel; resolves to an unsubscribe function. */
  listen(channel: string, handler: NotificationHandler): Promise<() => Promise<void>>
  /** Sends a NOTIFY on `channel`. Inside a transaction use `SELECT pg_notify($1,$2)` on the tx. */
  notify(channel: string, payload: string): Promise<void>
  close(): Promise<void>
}
