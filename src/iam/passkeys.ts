import { randomUUID } from 'node:crypto'
import type {
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/server'
import type { Db, Queryable } from '../core/db/index.ts'
import type { EventSink } from '../core/events.ts'
import { replaceRecoveryCodes } from './credentials/recovery.ts'
import {
  amrOf,
  authenticationOptions,
  CHALLENGE_TTL_SECONDS,
  counterRegressed,
  parseCredentialJson,
  type RelyingParty,
  registrationOptions,
  type StoredCredential,
  userHandle,
  verifyAssertion,
  verifyRegistration,
  type WebAuthnFailure,
  WebAuthnRefused,
} from './credentials/webauthn.ts'
import { type RequestInfo, requestEvent } from './request-event.ts'

/** A passkey as users and admins see it: never the public key. */
export interface PasskeyInfo {
  id: string
  name: string
  /** singleDevice (hardware-bound) or multiDevice (backup eligible, e.g. synced). */
  deviceType: 'singleDevice' | 'multiDevice'
  backedUp: boolean
  aaguid: string
  transports: string[]
  createdAt: string
  lastUsedAt: string | null
}

type InfoRow = {
  id: string
  name: string
  device_type: 'singleDevice' | 'multiDevice'
  backed_up: boolean
  aaguid: string
  transports: string[]
  created_at: Date
  last_used_at: Date | null
}

export const PASSKEY_COLUMNS =
  'id, name, device_type, backed_up, aaguid, transports, created_at, last_used_at'

export const toPasskeyInfo = (r: InfoRow): PasskeyInfo => ({
  id: r.id,
  name: r.name,
  deviceType: r.device_type,
  backedUp: r.backed_up,
  aaguid: r.aaguid,
  transports: r.transports,
  createdAt: r.created_at.toISOString(),
  lastUsedAt: r.last_used_at?.toISOString() ?? null,
})

/** What a ceremony is bound to: one login interaction, or one login session (account page). */
export type CeremonyBinding = { interaction: string } | { session: string }
const bindingKey = (b: CeremonyBinding) =>
  'interaction' in b ? `interaction:${b.interaction}` : `session:${b.session}`

/** Lockout and event plumbing shared with the password and TOTP steps (see Authenticator). */
export interface SecondFactorHooks {
  fail(
    realm: string,
    userId: string,
    req: RequestInfo,
    reason: string,
    details?: Record<string, unknown>,
  ): Promise<void>
  succeeded(
    realm: string,
    userId: string,
    req: RequestInfo,
    details: Record<string, unknown>,
  ): Promise<void>
  lockedOut(realm: string, userId: string): Promise<boolean>
}

export type CeremonyResult<T> =
  | ({ ok: true } & T)
  | { ok: false; reason: WebAuthnFailure | 'locked' }

const NAME_MAX = 64

/** A friendly name: printable, trimmed, at most 64 characters; a default otherwise. */
export function passkeyName(input: unknown): string {
  const cleaned = String(input ?? '')
    .replace(/[\p{Cc}\p{Cf}]/gu, '')
    .trim()
  return [...cleaned].slice(0, NAME_MAX).join('') || 'Passkey'
}

/**
 * The WebAuthn ceremonies: registration (enrolment) and authentication as the second factor.
 * Challenges are stored server-side, bound to the interaction or session and the user, expire
 * after five minutes and are deleted when a response is checked (single use). Every outcome is
 * a security event; failures count towards the account lockout like wrong TOTP codes.
 */
export class Passkeys {
  readonly #db: Db
  readonly #events: EventSink
  readonly #rp: (realm: string) => RelyingParty
  readonly #hooks: SecondFactorHooks

  constructor(
    db: Db,
    events: EventSink,
    rp: (realm: string) => RelyingParty,
    hooks: SecondFactorHooks,
  ) {
    this.#db = db
    this.#events = events
    this.#rp = rp
    this.#hooks = hooks
  }

  async list(realm: string, userId: string, q: Queryable = this.#db): Promise<PasskeyInfo[]> {
    const { rows } = await q.query<InfoRow>(
      `SELECT ${PASSKEY_COLUMNS} FROM iam.webauthn_credentials
       WHERE realm = $1 AND user_id = $2 ORDER BY created_at, id`,
      [realm, userId],
    )
    return rows.map(toPasskeyInfo)
  }

  async #stored(realm: string, userId: string): Promise<StoredCredential[]> {
    const { rows } = await this.#db.query<{
      credential_id: string
      public_key: Buffer
      counter: number
      transports: string[]
    }>(
      `SELECT credential_id, public_key, counter, transports FROM iam.webauthn_credentials
       WHERE realm = $1 AND user_id = $2 ORDER BY created_at, id`,
      [realm, userId],
    )
    return rows.map((r) => ({
      credentialId: r.credential_id,
      publicKey: r.public_key,
      counter: Number(r.counter),
      transports: r.transports,
    }))
  }

  async #saveChallenge(
    realm: string,
    userId: string,
    binding: CeremonyBinding,
    purpose: 'register' | 'authenticate',
    challenge: string,
  ) {
    await this.#db.query(
      `INSERT INTO iam.webauthn_challenges (realm, binding, purpose, user_id, challenge, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
       ON CONFLICT (realm, binding, purpose) DO UPDATE SET user_id = excluded.user_id,
         challenge = excluded.challenge, expires_at = excluded.expires_at`,
      [realm, bindingKey(binding), purpose, userId, challenge, CHALLENGE_TTL_SECONDS],
    )
  }

  /** Takes the challenge out (single use); undefined when absent, expired or not the user's. */
  async #claimChallenge(
    realm: string,
    userId: string,
    binding: CeremonyBinding,
    purpose: 'register' | 'authenticate',
  ) {
    const { rows } = await this.#db.query<{ user_id: string; challenge: string; live: boolean }>(
      `DELETE FROM iam.webauthn_challenges WHERE realm = $1 AND binding = $2 AND purpose = $3
       RETURNING user_id, challenge, expires_at > now() AS live`,
      [realm, bindingKey(binding), purpose],
    )
    const row = rows[0]
    return row?.live && row.user_id === userId ? row.challenge : undefined
  }

  /** Options for navigator.credentials.create(); undefined for an unknown or disabled user. */
  async beginRegistration(
    realm: string,
    userId: string,
    binding: CeremonyBinding,
  ): Promise<PublicKeyCredentialCreationOptionsJSON | undefined> {
    const { rows } = await this.#db.query<{ username: string; display_name: string }>(
      'SELECT username, display_name FROM iam.users WHERE realm = $1 AND id = $2 AND NOT disabled',
      [realm, userId],
    )
    const user = rows[0]
    if (!user) return undefined
    const options = await registrationOptions(
      this.#rp(realm),
      { id: userId, username: user.username, displayName: user.display_name },
      await this.#stored(realm, userId),
    )
    await this.#saveChallenge(realm, userId, binding, 'register', options.challenge)
    return options
  }

  /**
   * Verifies the registration response and stores the credential. With `recoveryCodes`, they
   * replace the user's recovery codes (`always`) or are issued only when the user has none left
   * (`ifNone`); the result says whether they were.
   */
  async finishRegistration(
    realm: string,
    userId: string,
    binding: CeremonyBinding,
    raw: unknown,
    name: unknown,
    req: RequestInfo,
    recovery?: { codes: readonly string[]; when: 'always' | 'ifNone' },
  ): Promise<CeremonyResult<{ passkey: PasskeyInfo; amr: string; recoveryCodesIssued: boolean }>> {
    if (await this.#hooks.lockedOut(realm, userId)) return { ok: false, reason: 'locked' }
    const challenge = await this.#claimChallenge(realm, userId, binding, 'register')
    try {
      if (!challenge) throw new WebAuthnRefused('no_challenge')
      const response = parseCredentialJson(raw, 'registration')
      const rp = this.#rp(realm)
      const v = await verifyRegistration(rp, response, challenge)
      const id = randomUUID()
      const saved = await this.#db.transaction(async (tx) => {
        const inserted = await tx.query<InfoRow>(
          `INSERT INTO iam.webauthn_credentials (realm, id, user_id, credential_id, public_key,
             counter, transports, device_type, backed_up, aaguid, name)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (realm, credential_id) DO NOTHING
           RETURNING ${PASSKEY_COLUMNS}`,
          [
            realm,
            id,
            userId,
            v.credentialId,
            v.publicKey,
            v.counter,
            v.transports,
            v.deviceType,
            v.backedUp,
            v.aaguid,
            passkeyName(name),
          ],
        )
        if (!inserted.rows[0]) return undefined
        let issued = false
        if (recovery) {
          const left = await tx.query(
            `SELECT 1 FROM iam.mfa_factors WHERE realm = $1 AND user_id = $2 AND kind = 'recovery'
             AND used_at IS NULL LIMIT 1`,
            [realm, userId],
          )
          if (recovery.when === 'always' || left.rows.length === 0) {
            await replaceRecoveryCodes(tx, realm, userId, recovery.codes)
            issued = true
          }
        }
        // A second factor exists now: enrolment is no longer owed, a pending TOTP set-up goes.
        await tx.query(
          'UPDATE iam.users SET must_enroll_mfa = false WHERE realm = $1 AND id = $2',
          [realm, userId],
        )
        await tx.query(
          `DELETE FROM iam.mfa_factors WHERE realm = $1 AND user_id = $2 AND kind = 'totp'
           AND NOT confirmed`,
          [realm, userId],
        )
        await this.#events.record(
          requestEvent(realm, req, {
            type: 'auth.mfa.enrolled',
            actor: { kind: 'user', id: userId },
            action: 'mfa:EnrollWebAuthn',
            resource: { type: 'WebAuthnCredential', id },
            outcome: 'success',
            details: {
              method: 'webauthn',
              aaguid: v.aaguid,
              deviceType: v.deviceType,
              backedUp: v.backedUp,
              userVerified: v.userVerified,
              recoveryCodesIssued: issued,
            },
          }),
          tx,
        )
        return { info: toPasskeyInfo(inserted.rows[0]), issued }
      })
      if (!saved) throw new WebAuthnRefused('duplicate_credential')
      return {
        ok: true,
        passkey: saved.info,
        amr: amrOf(v),
        recoveryCodesIssued: saved.issued,
      }
    } catch (err) {
      if (!(err instanceof WebAuthnRefused)) throw err
      await this.#hooks.fail(realm, userId, req, `webauthn_enrolment_${err.reason}`)
      return { ok: false, reason: err.reason }
    }
  }

  /** Options for navigator.credentials.get(); undefined when the user has no passkey. */
  async beginAuthentication(
    realm: string,
    userId: string,
    binding: CeremonyBinding,
  ): Promise<PublicKeyCredentialRequestOptionsJSON | undefined> {
    const stored = await this.#stored(realm, userId)
    if (stored.length === 0) return undefined
    const options = await authenticationOptions(this.#rp(realm), stored)
    await this.#saveChallenge(realm, userId, binding, 'authenticate', options.challenge)
    return options
  }

  /**
   * Verifies an assertion as the second factor of `userId`: the credential must be one of this
   * user's in this realm, the signature valid over this binding's challenge, and the signature
   * counter must grow (stored with a conditional UPDATE, so two concurrent uses of one counter
   * value cannot both pass). Returns the RFC 8176 method (`hwk` or `swk`).
   */
  async finishAuthentication(
    realm: string,
    userId: string,
    binding: CeremonyBinding,
    raw: unknown,
    req: RequestInfo,
  ): Promise<CeremonyResult<{ amr: string; passkeyId: string }>> {
    if (await this.#hooks.lockedOut(realm, userId)) return { ok: false, reason: 'locked' }
    const challenge = await this.#claimChallenge(realm, userId, binding, 'authenticate')
    let credentialRef: string | undefined
    let counters: { stored: number; presented: number } | undefined
    try {
      if (!challenge) throw new WebAuthnRefused('no_challenge')
      const response = parseCredentialJson(raw, 'authentication')
      const { rows } = await this.#db.query<{
        id: string
        credential_id: string
        public_key: Buffer
        counter: number
        transports: string[]
      }>(
        `SELECT id, credential_id, public_key, counter, transports FROM iam.webauthn_credentials
         WHERE realm = $1 AND user_id = $2 AND credential_id = $3`,
        [realm, userId, response.id],
      )
      const row = rows[0]
      if (!row) throw new WebAuthnRefused('unknown_credential')
      credentialRef = row.id
      const handle = response.response.userHandle
      if (handle && handle !== Buffer.from(userHandle(userId)).toString('base64url'))
        throw new WebAuthnRefused('user_handle_mismatch')
      const stored = Number(row.counter)
      const v = await verifyAssertion(this.#rp(realm), response, challenge, {
        credentialId: row.credential_id,
        publicKey: row.public_key,
        counter: stored,
        transports: row.transports,
      })
      counters = { stored, presented: v.newCounter }
      if (counterRegressed(stored, v.newCounter)) throw new WebAuthnRefused('counter_regression')
      const claimed = await this.#db.query(
        `UPDATE iam.webauthn_credentials SET counter = $3, backed_up = $4, last_used_at = now()
         WHERE realm = $1 AND id = $2 AND (counter < $3 OR (counter = 0 AND $3 = 0))`,
        [realm, row.id, v.newCounter, v.backedUp],
      )
      if (claimed.rowCount !== 1) throw new WebAuthnRefused('counter_regression')
      const amr = amrOf(v)
      await this.#hooks.succeeded(realm, userId, req, {
        method: 'webauthn',
        credential: row.id,
        amr,
        userVerified: v.userVerified,
      })
      return { ok: true, amr, passkeyId: row.id }
    } catch (err) {
      if (!(err instanceof WebAuthnRefused)) throw err
      // A regression behind a valid signature is the mark of a cloned authenticator.
      const details =
        err.reason === 'counter_regression'
          ? {
              credential: credentialRef,
              storedCounter: counters?.stored,
              counter: counters?.presented,
            }
          : credentialRef
            ? { credential: credentialRef }
            : undefined
      await this.#hooks.fail(realm, userId, req, `webauthn_${err.reason}`, details)
      return { ok: false, reason: err.reason }
    }
  }

  /** The user removes one of their own passkeys (account page). */
  async remove(realm: string, userId: string, id: string, req: RequestInfo): Promise<boolean> {
    return this.#db.transaction(async (tx) => {
      const r = await tx.query(
        'DELETE FROM iam.webauthn_credentials WHERE realm = $1 AND user_id = $2 AND id = $3',
        [realm, userId, id],
      )
      if (r.rowCount !== 1) return false
      await this.#events.record(
        requestEvent(realm, req, {
          type: 'auth.mfa.removed',
          actor: { kind: 'user', id: userId },
          action: 'mfa:RemoveWebAuthn',
          resource: { type: 'WebAuthnCredential', id },
          outcome: 'success',
        }),
        tx,
      )
      return true
    })
  }
}
