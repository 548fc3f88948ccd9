import { createHash } from 'node:crypto'
import type { Transaction } from '../core/db/index.ts'
import { PROBLEM_BASE, Problem, problems } from '../core/errors.ts'

/** `Idempotency-Key` values: 1–255 visible ASCII characters (draft-ietf-httpapi-idempotency-key). */
const KEY = /^[\x21-\x7e]{1,255}$/
/** Stored responses are replayed for this long. */
export const IDEMPOTENCY_TTL_HOURS = 24

export interface StoredResponse {
  status: number
  body: unknown
}

export function parseIdempotencyKey(value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || !KEY.test(value))
    throw problems.badRequest('Idempotency-Key must be 1-255 visible ASCII characters')
  return value
}

export function fingerprint(method: string, url: string, body: unknown): string {
  return createHash('sha256')
    .update(`${method} ${url}\n${JSON.stringify(body ?? null)}`)
    .digest('hex')
}

/**
 * The stored response for this key, when the same request was already handled; a different
 * request under the same key is refused (422). Runs in the write's transaction.
 */
export async function replayed(
  tx: Transaction,
  scope: { tenant: string; principal: string; key: string; fingerprint: string },
): Promise<StoredResponse | undefined> {
  // Serialises concurrent requests with the same key: the second waits, then replays.
  await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
    JSON.stringify([scope.tenant, scope.principal, scope.key]),
  ])
  const { rows } = await tx.query<{ fingerprint: string; status: number; body: unknown }>(
    `SELECT fingerprint, status, body FROM gateway.idempotency_keys
      WHERE tenant = $1 AND principal = $2 AND key = $3
        AND created_at > now() - make_interval(hours => $4)`,
    [scope.tenant, scope.principal, scope.key, IDEMPOTENCY_TTL_HOURS],
  )
  const row = rows[0]
  if (!row) return undefined
  if (row.fingerprint !== scope.fingerprint)
    throw new Problem({
      status: 422,
      title: 'Unprocessable Content',
      type: `${PROBLEM_BASE}idempotency-key-reused`,
      detail: 'This Idempotency-Key was used for a different request',
    })
  return { status: row.status, body: row.body }
}

export async function remember(
  tx: Transaction,
  scope: { tenant: string; principal: string; key: string; fingerprint: string },
  response: StoredResponse,
) {
  await tx.query(
    `INSERT INTO gateway.idempotency_keys (tenant, principal, key, fingerprint, status, body)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (tenant, principal, key) DO UPDATE
       SET fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, body = EXCLUDED.body,
           created_at = now()
       WHERE gateway.idempotency_keys.created_at <= now() - make_interval(hours => ${IDEMPOTENCY_TTL_HOURS})`,
    [
      scope.tenant,
      scope.principal,
      scope.key,
      scope.fingerprint,
      response.status,
      JSON.stringify(response.body ?? null),
    ],
  )
}
