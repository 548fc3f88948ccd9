import { createHash } from 'node:crypto'

/**
 * A statement prepared once per connection: PostgreSQL parses and plans it the first time and
 * reuses the plan after. Worth it for short statements run on every request whose plan cannot
 * depend on their parameters (the audit event's INSERT, the revisions read), where planning
 * costs as much as running. PGlite's wire prepares every statement already. Prepared statements
 * live in the connection's session: a pooler in transaction mode must track them (README).
 */
export interface PreparedStatement {
  readonly text: string
  /** Derived from the text, so that two texts never share a name. */
  readonly name: string
}

/** A statement's text, or a prepared statement. */
export type Sql = string | PreparedStatement

const statements = new Map<string, PreparedStatement>()
const MAX_STATEMENTS = 1000

/** The prepared statement for `text` (the same object for the same text). */
export function prepared(text: string): PreparedStatement {
  let statement = statements.get(text)
  if (!statement) {
    const digest = createHash('sha256').update(text).digest('hex').slice(0, 32)
    statement = Object.freeze({ text, name: `dflare_${digest}` })
    if (statements.size < MAX_STATEMENTS) statements.set(text, statement)
  }
  return statement
}

export function sqlText(sql: Sql): string {
  return typeof sql === 'string' ? sql : sql.text
}
