import type { Db, Queryable } from '../core/db/index.ts'
import type { Sealer } from './kek.ts'

/** What oidc-provider stores through an adapter (see its README "Adapter" section). */
export type Payload = Record<string, unknown> & {
  grantId?: string
  userCode?: string
  uid?: string
  accountId?: string
  consumed?: number
  authorizations?: Record<string, { sid?: string; grantId?: string }>
}

/**
 * oidc-provider adapter over core/db, one instance per (realm, model). Rows past `expires_at`
 * are invisible; `consume` marks a row so a replay is detected (refresh token reuse revokes
 * the grant); `revokeByGrantId` deletes every artifact of a grant.
 */
export class DbAdapter {
  readonly db: Db
  readonly realm: string
  readonly model: string

  constructor(db: Db, realm: string, model: string) {
    this.db = db
    this.realm = realm
    this.model = model
  }

  async upsert(id: string, payload: Payload, expiresIn?: number) {
    const expires = expiresIn ? new Date(Date.now() + expiresIn * 1000) : null
    await this.db.query(
      `INSERT INTO iam.oidc_payloads (realm, model, id, payload, grant_id, user_code, uid, account_id, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (realm, model, id) DO UPDATE SET payload = excluded.payload,
         grant_id = excluded.grant_id, user_code = excluded.user_code, uid = excluded.uid,
         account_id = excluded.account_id, expires_at = excluded.expires_at`,
      [
        this.realm,
        this.model,
        id,
        payload,
        payload.grantId ?? null,
        payload.userCode ?? null,
        payload.uid ?? null,
        payload.accountId ?? null,
        expires,
      ],
    )
  }

  async #findBy(column: 'id' | 'user_code' | 'uid', value: string) {
    const { rows } = await this.db.query<{ payload: Payload; consumed_at: Date | null }>(
      `SELECT payload, consumed_at FROM iam.oidc_payloads
       WHERE realm = $1 AND model = $2 AND ${column} = $3
         AND (expires_at IS NULL OR expires_at > now())
       LIMIT 1`,
      [this.realm, this.model, value],
    )
    const row = rows[0]
    if (!row) return undefined
    return row.consumed_at
      ? { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) }
      : row.payload
  }

  find(id: string) {
    return this.#findBy('id', id)
  }

  findByUserCode(userCode: string) {
    return this.#findBy('user_code', userCode)
  }

  findByUid(uid: string) {
    return this.#findBy('uid', uid)
  }

  async consume(id: string) {
    await this.db.query(
      `UPDATE iam.oidc_payloads SET consumed_at = now()
       WHERE realm = $1 AND model = $2 AND id = $3`,
      [this.realm, this.model, id],
    )
  }

  async destroy(id: string) {
    await this.db.query(
      'DELETE FROM iam.oidc_payloads WHERE realm = $1 AND model = $2 AND id = $3',
      [this.realm, this.model, id],
    )
  }

  async revokeByGrantId(grantId: string) {
    await revokeGrant(this.db, this.realm, grantId)
  }
}

/** Revocation rows outlive every access token that could carry the sid (15 min hard max). */
const REVOCATION_HORIZON_SECONDS = 16 * 60

/** NOTIFY channel telling the back-channel logout sender that logouts are queued. */
export const BACKCHANNEL_CHANNEL = 'iam_backchannel'

/**
 * Ends a login session: deletes it, revokes the grants it authorised, records its sids as
 * revoked so the gateway rejects access tokens that carry them, and queues an OpenID Connect
 * Back-Channel Logout for every client of the session that registered a back-channel logout
 * URI (sent once the caller's transaction commits). Returns the ended session.
 */
export async function endSession(q: Queryable, realm: string, sessionId: string) {
  const { rows } = await q.query<{ payload: Payload }>(
    `DELETE FROM iam.oidc_payloads WHERE realm = $1 AND model = 'Session' AND id = $2
     RETURNING payload`,
    [realm, sessionId],
  )
  const session = rows[0]?.payload
  if (!session) return undefined
  const auths = Object.entries(session.authorizations ?? {})
  for (const [, auth] of auths) if (auth.grantId) await revokeGrant(q, realm, auth.grantId)
  if (typeof session.uid === 'string') await recordRevokedSids(q, realm, [session.uid])
  const notify = auths.filter(([, auth]) => typeof auth.sid === 'string')
  if (typeof session.accountId === 'string' && notify.length > 0) {
    const queued = await q.query(
      `INSERT INTO iam.backchannel_logouts (realm, client_id, account_id, sid)
       SELECT $1, c.client_id, $2, t.sid
       FROM unnest($3::text[], $4::text[]) AS t (client_id, sid)
       JOIN iam.clients c ON c.realm = $1 AND c.client_id = t.client_id
       WHERE c.metadata->>'backchannel_logout_uri' IS NOT NULL`,
      [realm, session.accountId, notify.map(([c]) => c), notify.map(([, a]) => a.sid!)],
    )
    // Delivered to listeners only when the transaction commits.
    if (queued.rowCount > 0) await q.query('SELECT pg_notify($1, $2)', [BACKCHANNEL_CHANNEL, realm])
  }
  return session
}

/** Marks session ids revoked for the gateway (access tokens carry them as `sid`). */
export async function recordRevokedSids(q: Queryable, realm: string, sids: readonly string[]) {
  for (const sid of sids)
    await q.query(
      `INSERT INTO iam.revoked_sessions (realm, sid, expires_at)
       VALUES ($1, $2, now() + make_interval(secs => $3)) ON CONFLICT DO NOTHING`,
      [realm, sid, REVOCATION_HORIZON_SECONDS],
    )
}

export async function revokeGrant(q: Queryable, realm: string, grantId: string) {
  await q.query('DELETE FROM iam.oidc_payloads WHERE realm = $1 AND grant_id = $2', [
    realm,
    grantId,
  ])
  await q.query(`DELETE FROM iam.oidc_payloads WHERE realm = $1 AND model = 'Grant' AND id = $2`, [
    realm,
    grantId,
  ])
}

/** Client metadata comes from iam.clients, with the secret decrypted only here. */
export class ClientAdapter extends DbAdapter {
  readonly sealer: Sealer
  constructor(db: Db, realm: string, sealer: Sealer) {
    super(db, realm, 'Client')
    this.sealer = sealer
  }

  override async find(id: string) {
    const { rows } = await this.db.query<{ metadata: Payload; secret_enc: Buffer | null }>(
      'SELECT metadata, secret_enc FROM iam.clients WHERE realm = $1 AND client_id = $2',
      [this.realm, id],
    )
    const row = rows[0]
    if (!row) return undefined
    const secret = row.secret_enc
      ? this.sealer.open(row.secret_enc, clientSecretAad(this.realm, id)).toString('utf8')
      : undefined
    return { ...row.metadata, client_id: id, ...(secret ? { client_secret: secret } : {}) }
  }

  override async upsert(): Promise<void> {
    throw new Error('clients are managed through the iam service, not dynamic registration')
  }
}

export const clientSecretAad = (realm: string, clientId: string) =>
  `iam.clients/${realm}/${clientId}`
