import { problems } from '../../core/errors.ts'
import { endSession, type Payload } from '../adapter.ts'
import { type AdminActor, type AdminDeps, change } from './context.ts'

/** A login session as users and admins see it (never its cookie or token values). */
export interface SessionInfo {
  /** Stable id of the login session: the `sid` claim of access tokens minted in it. */
  id: string
  userId: string
  authTime: string | null
  amr: string[]
  acr: string | null
  clients: string[]
  expiresAt: string | null
}

type Row = { payload: Payload; expires_at: Date | null }

const toInfo = (r: Row): SessionInfo => ({
  id: String(r.payload.uid),
  userId: String(r.payload.accountId),
  authTime:
    typeof r.payload.loginTs === 'number' ? new Date(r.payload.loginTs * 1000).toISOString() : null,
  amr: Array.isArray(r.payload.amr) ? (r.payload.amr as string[]) : [],
  acr: typeof r.payload.acr === 'string' ? r.payload.acr : null,
  clients: Object.keys(r.payload.authorizations ?? {}),
  expiresAt: r.expires_at?.toISOString() ?? null,
})

export interface SessionListOptions {
  /** Only this user's sessions. */
  userId?: string | undefined
  /** Keyset pagination: only sessions whose id sorts after this one. */
  after?: string | undefined
  limit?: number | undefined
}

/** A realm's live login sessions in id order, one page at a time (filtered by the database). */
export async function listSessions(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  options: SessionListOptions = {},
): Promise<SessionInfo[]> {
  const { rows } = await deps.db.query<Row>(
    `SELECT payload, expires_at FROM iam.oidc_payloads
     WHERE realm = $1 AND model = 'Session' AND account_id IS NOT NULL AND uid IS NOT NULL
       AND ($2::text IS NULL OR account_id = $2) AND (expires_at IS NULL OR expires_at > now())
       AND ($3::text IS NULL OR uid COLLATE "C" > $3)
     ORDER BY uid COLLATE "C"
     LIMIT $4`,
    [realm, options.userId ?? null, options.after ?? null, options.limit ?? null],
  )
  return rows.map(toInfo)
}

/**
 * Ends a session: the session and its grants (refresh tokens) are deleted at once and its id is
 * recorded as revoked, so the gateway refuses its access tokens (within their lifetime at most).
 * With `userId`, only that user's session can be revoked (self-service).
 */
export async function revokeSession(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  sessionId: string,
  userId?: string,
) {
  await change(
    deps,
    who,
    realm,
    {
      type: 'iam.session.revoked',
      action: 'iam:RevokeSession',
      resource: { type: 'Session', id: sessionId },
    },
    async (tx) => {
      const { rows } = await tx.query<{ id: string }>(
        `SELECT id FROM iam.oidc_payloads WHERE realm = $1 AND model = 'Session' AND uid = $2
         AND ($3::text IS NULL OR account_id = $3)`,
        [realm, sessionId, userId ?? null],
      )
      if (!rows[0]) throw problems.notFound('No such session')
      await endSession(tx, realm, rows[0].id)
    },
  )
}

/** Ends every session of a user (e.g. after a password reset or when disabling the account). */
export async function revokeUserSessions(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  userId: string,
) {
  return change(
    deps,
    who,
    realm,
    {
      type: 'iam.session.revoked_all',
      action: 'iam:RevokeUserSessions',
      resource: { type: 'User', id: userId },
    },
    async (tx) => {
      const { rows } = await tx.query<{ id: string }>(
        `SELECT id FROM iam.oidc_payloads WHERE realm = $1 AND model = 'Session' AND account_id = $2`,
        [realm, userId],
      )
      for (const r of rows) await endSession(tx, realm, r.id)
      return rows.length
    },
    (n) => ({ sessions: n }),
  )
}
