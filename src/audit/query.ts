import type { Queryable, SqlValue } from '../core/db/index.ts'
import { problems } from '../core/errors.ts'
import type { AuditRecord } from './event.ts'
import type { Pseudonymizer } from './pseudonym.ts'

export interface EventFilter {
  /** Logs the caller may read: `all` (security officer) or an explicit list (a tenant's auditor). */
  allowed: 'all' | readonly string[]
  /** Narrow to one log (must be allowed). */
  log?: string
  correlationId?: string
  /** Actor id; an email is pseudonymised the same way the log stores it. */
  actor?: string
  action?: string
  outcome?: AuditRecord['outcome']
  type?: string
  since?: Date
  until?: Date
  cursor?: string
  limit?: number
}

export interface StoredEvent {
  log: string
  index: number
  event: AuditRecord
}

export interface EventPage {
  events: StoredEvent[]
  /** Pass back as `cursor` for the next page; absent on the last page. */
  nextCursor?: string
}

export const MAX_PAGE = 1000

function encodeCursor(time: string, log: string, index: number) {
  return Buffer.from(JSON.stringify([time, log, index])).toString('base64url')
}

function decodeCursor(cursor: string): [string, string, number] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (
      Array.isArray(v) &&
      v.length === 3 &&
      typeof v[0] === 'string' &&
      typeof v[1] === 'string' &&
      Number.isSafeInteger(v[2])
    )
      return v as [string, string, number]
  } catch {}
  throw problems.badRequest('cursor is invalid')
}

/** Reads events in (time, log, index) order with keyset pagination; never outside `allowed`. */
export class QueryService {
  readonly #db: Queryable
  readonly #p: Pseudonymizer
  readonly #drain: () => Promise<void>

  /** `drain` integrates queued events first, so a query sees everything recorded before it. */
  constructor(
    db: Queryable,
    pseudonymizer: Pseudonymizer,
    drain: () => Promise<void> = async () => {},
  ) {
    this.#db = db
    this.#p = pseudonymizer
    this.#drain = drain
  }

  async events(f: EventFilter): Promise<EventPage> {
    // Later pages continue from a position the first page already saw integrated.
    if (!f.cursor) await this.#drain()
    const where: string[] = []
    const params: SqlValue[] = []
    const add = (sql: string, value: SqlValue) => {
      params.push(value)
      where.push(sql.replace('?', `$${params.length}`))
    }
    if (f.allowed !== 'all') {
      if (f.allowed.length === 0) return { events: [] }
      add('log = ANY(?::text[])', [...f.allowed])
    }
    if (f.log) {
      if (f.allowed !== 'all' && !f.allowed.includes(f.log)) throw problems.forbidden()
      add('log = ?', f.log)
    }
    if (f.correlationId) add('correlation_id = ?', f.correlationId)
    if (f.actor) add('actor_id = ?', this.#p.maybeEmail(f.actor))
    if (f.action) add('action = ?', f.action)
    if (f.outcome) add('outcome = ?', f.outcome)
    if (f.type) add('type = ?', f.type)
    for (const d of [f.since, f.until])
      if (d && Number.isNaN(d.getTime())) throw problems.badRequest('time filter is invalid')
    if (f.since) add('time >= ?', f.since.toISOString())
    if (f.until) add('time < ?', f.until.toISOString())
    if (f.cursor) {
      const [time, log, index] = decodeCursor(f.cursor)
      params.push(time, log, index)
      const n = params.length
      where.push(`(time, log, idx) > ($${n - 2}, $${n - 1}, $${n}::bigint)`)
    }
    const limit = Math.min(Math.max(f.limit ?? 100, 1), MAX_PAGE)
    params.push(limit + 1)
    const { rows } = await this.#db.query<{ log: string; idx: number; body: string; time: string }>(
      `SELECT log, idx, body, time FROM audit.events
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY time, log, idx LIMIT $${params.length}`,
      params,
    )
    const page = rows.slice(0, limit)
    const last = page[page.length - 1]
    return {
      events: page.map((r) => ({ log: r.log, index: r.idx, event: JSON.parse(r.body) })),
      ...(rows.length > limit && last
        ? { nextCursor: encodeCursor(last.time, last.log, last.idx) }
        : {}),
    }
  }

  /** Every matching event, page after page (exports). */
  async *all(f: Omit<EventFilter, 'cursor'>): AsyncGenerator<StoredEvent> {
    let cursor: string | undefined
    do {
      const page = await this.events({ ...f, limit: MAX_PAGE, ...(cursor ? { cursor } : {}) })
      yield* page.events
      cursor = page.nextCursor
    } while (cursor)
  }

  /** One event by position, with its body exactly as hashed (for inclusion proofs). */
  async event(log: string, index: number): Promise<{ body: string; leafHash: Buffer } | undefined> {
    const { rows } = await this.#db.query<{ body: string; leaf_hash: Buffer }>(
      'SELECT body, leaf_hash FROM audit.events WHERE log = $1 AND idx = $2',
      [log, index],
    )
    return rows[0] && { body: rows[0].body, leafHash: rows[0].leaf_hash }
  }
}
