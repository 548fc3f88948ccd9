import { problems } from '../core/errors.ts'

/** Opaque cursors: base64url of the last returned sort key. */
export function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url')
}

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) throw problems.badRequest('query.cursor is invalid')
  return Buffer.from(cursor, 'base64url').toString('utf8')
}

export const paginationQuery = {
  limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  cursor: { type: 'string', maxLength: 400 },
} as const

/** A page of `limit` items plus the cursor of the next page (when there is one). */
export function page<T>(rows: T[], limit: number, keyOf: (row: T) => string) {
  const items = rows.slice(0, limit)
  const next = rows.length > limit ? encodeCursor(keyOf(items.at(-1)!)) : undefined
  return { items, ...(next ? { next_cursor: next } : {}) }
}
