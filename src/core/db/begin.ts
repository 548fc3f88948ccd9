import { assertIdentifier } from './names.ts'
import type { TransactionOptions } from './types.ts'

/** The statements that open a transaction, before the caller's first. */
export interface Opening {
  /**
   * One statement each, in order: BEGIN with the mode; for a held read (core/db/held-read.ts) the
   * savepoint and `SET TRANSACTION READ ONLY`; the piggybacked read; the role. `unique` marks the
   * savepoint, whose name is new every time (not worth preparing).
   */
  statements: { sql: string; unique?: true }[]
  /** Index of the piggybacked read's statement. */
  piggybackAt: number
  /** Transaction-local settings (`set_config(name, value, true)`), set after the role. */
  settings: [string, string][]
}

/**
 * Validates and lays out the opening of a transaction. Throws on a role or savepoint name that is
 * not a plain identifier, and on a piggybacked read of more than one statement. With `section`
 * (a held read) the transaction itself is read-write and everything after the savepoint of that
 * name is read-only, role and settings included. A piggybacked read (core/db/piggyback.ts) runs
 * right after BEGIN, as the connecting user.
 */
export function openingOf(
  options: TransactionOptions = {},
  piggyback?: string,
  section?: string,
): Opening {
  const isolation = options.isolation ?? 'read committed'
  const readOnly = options.readOnly && !section
  const statements: Opening['statements'] = [
    { sql: `BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}${readOnly ? ' READ ONLY' : ''}` },
  ]
  if (section)
    statements.push(
      { sql: `SAVEPOINT ${assertIdentifier('savepoint', section)}`, unique: true },
      { sql: 'SET TRANSACTION READ ONLY' },
    )
  const piggybackAt = statements.length
  if (piggyback !== undefined) {
    if (piggyback.includes(';')) throw new Error('a piggybacked read must be one statement')
    statements.push({ sql: piggyback })
  }
  if (options.role)
    statements.push({ sql: `SET LOCAL ROLE ${assertIdentifier('role', options.role)}` })
  return { statements, piggybackAt, settings: Object.entries(options.settings ?? {}) }
}

/** Setting names and values that may be written into SQL text as they are (no quoting needed). */
const PLAIN_SETTING_NAME = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/
const PLAIN_SETTING_VALUE = /^[A-Za-z0-9._:@/-]{0,256}$/

/**
 * The opening, sent in one write: `head` is a multi-statement simple query (`BEGIN …`, and for a
 * held read its savepoint and `SET TRANSACTION READ ONLY`), so that if any part fails the
 * transaction is aborted and every statement after it fails too. The piggybacked read, when there
 * is one, goes right behind it as a prepared statement (planned once per connection, not on every
 * request), and `tail` (`SET LOCAL ROLE …; SELECT set_config(…)`) behind that. Only names and
 * values of a plain character set are written into the text; anything else is set with a
 * parameter, sent after the tail (on a pipelined connection, before anything the caller sends).
 */
export function beginStatements(
  options: TransactionOptions = {},
  piggyback?: string,
  section?: string,
): {
  head: string
  tail: string | undefined
  params: [string, string][]
} {
  const opening = openingOf(options, piggyback, section)
  const statements = opening.statements.map((s) => s.sql)
  const params: [string, string][] = []
  const inline: string[] = []
  for (const [name, value] of opening.settings) {
    if (PLAIN_SETTING_NAME.test(name) && PLAIN_SETTING_VALUE.test(value))
      inline.push(`set_config('${name}', '${value}', true)`)
    else params.push([name, value])
  }
  if (inline.length > 0) statements.push(`SELECT ${inline.join(', ')}`)
  if (piggyback === undefined) return { head: statements.join('; '), tail: undefined, params }
  const after = statements.slice(opening.piggybackAt + 1)
  return {
    head: statements.slice(0, opening.piggybackAt).join('; '),
    tail: after.length > 0 ? after.join('; ') : undefined,
    params,
  }
}
