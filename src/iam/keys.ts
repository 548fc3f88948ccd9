import { generateKeyPairSync, randomUUID } from 'node:crypto'
import type { JWK } from 'jose'
import type { Db, Transaction } from '../core/db/index.ts'
import type { EventSink } from '../core/events.ts'
import type { Sealer } from './kek.ts'

export interface KeyPolicy {
  /** How long a key signs before the next one takes over (ms). */
  rotationInterval: number
  /** How long a retired key stays published (ms). */
  overlap: number
}

export interface RealmKeys {
  /** Private JWKs in signing order: current first (oidc-provider signs with the first match). */
  signing: JWK[]
  /** Public JWKs of every published key: current, next and not-yet-retired previous ones. */
  published: JWK[]
}

type KeyRow = {
  kid: string
  state: 'next' | 'current' | 'previous'
  public_jwk: JWK
  private_jwk_enc: Buffer
  activated_at: Date | null
}

const aad = (realm: string, kid: string) => `iam.signing_keys/${realm}/${kid}`

function newKey(sealer: Sealer, realm: string) {
  const kid = randomUUID()
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const priv = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }
  const pub = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' }
  return { kid, pub, sealed: sealer.seal(JSON.stringify(priv), aad(realm, kid)) }
}

async function insertKey(
  tx: Transaction,
  sealer: Sealer,
  realm: string,
  state: 'next' | 'current',
) {
  const k = newKey(sealer, realm)
  await tx.query(
    `INSERT INTO iam.signing_keys (realm, kid, state, public_jwk, private_jwk_enc, activated_at)
     VALUES ($1, $2, $3, $4, $5, CASE WHEN $3 = 'current' THEN now() END)`,
    [realm, k.kid, state, k.pub as Record<string, unknown>, k.sealed],
  )
  return k.kid
}

/**
 * Makes sure the realm has a current and a next key and rotates when the current one is due:
 * next becomes current, current becomes previous until `overlap` has passed, a new next is
 * made. Serialised per realm by locking the realm row. Returns true when it rotated.
 */
export async function ensureKeys(
  db: Db,
  sealer: Sealer,
  events: EventSink,
  realm: string,
  policy: KeyPolicy,
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const locked = await tx.query('SELECT 1 FROM iam.realms WHERE id = $1 FOR UPDATE', [realm])
    if (locked.rows.length === 0) throw new Error('realm does not exist')
    await tx.query(
      `DELETE FROM iam.signing_keys WHERE realm = $1 AND state = 'previous' AND retire_at <= now()`,
      [realm],
    )
    const { rows } = await tx.query<KeyRow>(
      `SELECT kid, state, activated_at FROM iam.signing_keys WHERE realm = $1`,
      [realm],
    )
    const current = rows.find((r) => r.state === 'current')
    const next = rows.find((r) => r.state === 'next')
    if (!current) {
      const kid = await insertKey(tx, sealer, realm, 'current')
      if (!next) await insertKey(tx, sealer, realm, 'next')
      await events.record(
        {
          type: 'key.created',
          tenant: realm,
          actor: { kind: 'system', id: 'iam' },
          action: 'iam:CreateSigningKey',
          resource: { type: 'SigningKey', id: kid },
          outcome: 'success',
        },
        tx,
      )
      return false
    }
    if (!next) await insertKey(tx, sealer, realm, 'next')
    const age = Date.now() - (current.activated_at?.getTime() ?? 0)
    if (age < policy.rotationInterval) return false
    await tx.query(
      `UPDATE iam.signing_keys SET state = 'previous', retire_at = now() + make_interval(secs => $3)
       WHERE realm = $1 AND kid = $2`,
      [realm, current.kid, policy.overlap / 1000],
    )
    const promoted = await tx.query<{ kid: string }>(
      `UPDATE iam.signing_keys SET state = 'current', activated_at = now()
       WHERE realm = $1 AND state = 'next' RETURNING kid`,
      [realm],
    )
    await insertKey(tx, sealer, realm, 'next')
    await events.record(
      {
        type: 'key.rotated',
        tenant: realm,
        actor: { kind: 'system', id: 'iam' },
        action: 'iam:RotateSigningKey',
        resource: { type: 'SigningKey', id: promoted.rows[0]!.kid },
        outcome: 'success',
        details: { retired: current.kid },
      },
      tx,
    )
    return true
  })
}

const ORDER = { current: 0, next: 1, previous: 2 } as const

export async function loadKeys(db: Db, sealer: Sealer, realm: string): Promise<RealmKeys> {
  const { rows } = await db.query<KeyRow>(
    `SELECT kid, state, public_jwk, private_jwk_enc FROM iam.signing_keys
     WHERE realm = $1 AND (retire_at IS NULL OR retire_at > now())`,
    [realm],
  )
  rows.sort((a, b) => ORDER[a.state] - ORDER[b.state])
  return {
    signing: rows
      .filter((r) => r.state === 'current')
      .map((r) => JSON.parse(sealer.open(r.private_jwk_enc, aad(realm, r.kid)).toString('utf8'))),
    published: rows.map((r) => r.public_jwk),
  }
}

/** Public keys only (for verifiers), without decrypting anything. */
export async function publishedKeys(db: Db, realm: string): Promise<JWK[]> {
  const { rows } = await db.query<{ public_jwk: JWK }>(
    `SELECT public_jwk FROM iam.signing_keys
     WHERE realm = $1 AND (retire_at IS NULL OR retire_at > now()) ORDER BY created_at`,
    [realm],
  )
  return rows.map((r) => r.public_jwk)
}
