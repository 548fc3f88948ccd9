import { randomUUID } from 'node:crypto'
import type { Db, Transaction } from '../core/db/index.ts'
import type { EventSink } from '../core/events.ts'
import { verifyPassword } from './credentials/passwords.ts'
import { hashRecoveryCode, replaceRecoveryCodes } from './credentials/recovery.ts'
import { matchTotp, newTotpSecret } from './credentials/totp.ts'
import type { RelyingParty } from './credentials/webauthn.ts'
import type { Sealer } from './kek.ts'
import { Passkeys } from './passkeys.ts'
import { type RequestInfo, requestEvent } from './request-event.ts'

export interface LockoutPolicy {
  threshold: number
  /** ms */
  duration: number
  ipLimit: number
}

export type { RequestInfo } from './request-event.ts'

export type PasswordResult =
  | { ok: true; userId: string; mfa: MfaState }
  | { ok: false; reason: 'invalid_credentials' | 'locked' | 'throttled' | 'disabled' }

/** What the login flow must do after the password: verify a factor, enrol one, or nothing. */
export type MfaState = 'verify' | 'enroll' | 'none'

type UserRow = {
  id: string
  disabled: boolean
  is_admin: boolean
  must_enroll_mfa: boolean
  locked_until: Date | null
  hash: string | null
  mfa_policy: string
  has_factor: boolean
}

const totpAad = (realm: string, id: string) => `iam.mfa_factors/${realm}/${id}`

/** Second factors a user has, for the login and account pages. */
export interface UserFactors {
  totp: boolean
  passkeys: number
  recoveryCodes: number
}

/**
 * Password and second-factor checks with AC-7 lockout: N consecutive failures lock the account
 * for a while (an admin can unlock earlier), and failures per source IP are throttled. Every
 * outcome is a security event; no event carries the password, the code or the user name typed.
 * Second factors: TOTP, recovery codes and WebAuthn passkeys (`passkeys`).
 */
export class Authenticator {
  readonly #db: Db
  readonly #events: EventSink
  readonly #sealer: Sealer
  readonly #policy: LockoutPolicy
  /** WebAuthn registration and authentication ceremonies, sharing this lockout. */
  readonly passkeys: Passkeys

  constructor(
    db: Db,
    events: EventSink,
    sealer: Sealer,
    policy: LockoutPolicy,
    relyingParty: (realm: string) => RelyingParty,
  ) {
    this.#db = db
    this.#events = events
    this.#sealer = sealer
    this.#policy = policy
    this.passkeys = new Passkeys(db, events, relyingParty, {
      fail: (realm, userId, req, reason, details) =>
        this.#fail(realm, userId, req, 'mfa', reason, details),
      succeeded: async (realm, userId, req, details) => {
        await this.#mfaOk(realm, userId, req, [], details)
      },
      lockedOut: (realm, userId) => this.#lockedOut(realm, userId),
    })
  }

  async #ipThrottled(realm: string, ip: string | undefined) {
    if (!ip) return false
    const { rows } = await this.#db.query<{ failures: number }>(
      `SELECT failures FROM iam.login_throttle
       WHERE realm = $1 AND ip = $2 AND window_start > now() - make_interval(secs => $3)`,
      [realm, ip, this.#policy.duration / 1000],
    )
    return (rows[0]?.failures ?? 0) >= this.#policy.ipLimit
  }

  async #countIpFailure(tx: Transaction, realm: string, ip: string | undefined) {
    if (!ip) return
    await tx.query(
      `INSERT INTO iam.login_throttle (realm, ip, failures, window_start) VALUES ($1, $2, 1, now())
       ON CONFLICT (realm, ip) DO UPDATE SET
         failures = CASE WHEN iam.login_throttle.window_start > now() - make_interval(secs => $3)
                         THEN iam.login_throttle.failures + 1 ELSE 1 END,
         window_start = CASE WHEN iam.login_throttle.window_start > now() - make_interval(secs => $3)
                         THEN iam.login_throttle.window_start ELSE now() END`,
      [realm, ip, this.#policy.duration / 1000],
    )
  }

  /** Counts a failure for the user (and IP); locks the account at the threshold. */
  async #fail(
    realm: string,
    userId: string | undefined,
    req: RequestInfo,
    action: 'login' | 'mfa',
    reason: string,
    details?: Record<string, unknown>,
  ) {
    await this.#db.transaction(async (tx) => {
      await this.#countIpFailure(tx, realm, req.ip)
      let locked = false
      if (userId) {
        const { rows } = await tx.query<{ failed_logins: number }>(
          `UPDATE iam.users SET failed_logins = failed_logins + 1
           WHERE realm = $1 AND id = $2 RETURNING failed_logins`,
          [realm, userId],
        )
        if ((rows[0]?.failed_logins ?? 0) >= this.#policy.threshold) {
          locked = true
          await tx.query(
            `UPDATE iam.users SET failed_logins = 0,
               locked_until = now() + make_interval(secs => $3) WHERE realm = $1 AND id = $2`,
            [realm, userId, this.#policy.duration / 1000],
          )
        }
      }
      const actor = userId
        ? ({ kind: 'user', id: userId } as const)
        : ({ kind: 'anonymous', id: 'unknown' } as const)
      await this.#events.record(
        requestEvent(realm, req, {
          type: action === 'login' ? 'auth.login' : 'auth.mfa',
          actor,
          action,
          outcome: 'failure',
          reason,
          ...(details ? { details } : {}),
        }),
        tx,
      )
      if (locked)
        await this.#events.record(
          requestEvent(realm, req, {
            type: 'auth.lockout',
            actor,
            action: 'lock',
            resource: { type: 'User', id: userId! },
            outcome: 'success',
            reason: 'too_many_failures',
            details: { threshold: this.#policy.threshold },
          }),
          tx,
        )
    })
  }

  async #user(realm: string, username: string) {
    const { rows } = await this.#db.query<UserRow>(
      `SELECT u.id, u.disabled, u.is_admin, u.must_enroll_mfa, u.locked_until, c.hash, r.mfa_policy,
         (EXISTS (SELECT 1 FROM iam.mfa_factors f WHERE f.realm = u.realm AND f.user_id = u.id
                  AND f.kind = 'totp' AND f.confirmed)
          OR EXISTS (SELECT 1 FROM iam.webauthn_credentials w WHERE w.realm = u.realm
                  AND w.user_id = u.id)) AS has_factor
       FROM iam.users u JOIN iam.realms r ON r.id = u.realm
       LEFT JOIN iam.credentials c ON c.realm = u.realm AND c.user_id = u.id AND c.kind = 'password'
       WHERE u.realm = $1 AND u.username = $2`,
      [realm, username],
    )
    return rows[0]
  }

  /** Step one: user name and password. Always spends one argon2 verification. */
  async password(
    realm: string,
    username: string,
    password: string,
    req: RequestInfo,
  ): Promise<PasswordResult> {
    const throttled = await this.#ipThrottled(realm, req.ip)
    const user = await this.#user(realm, username)
    const locked = user?.locked_until && user.locked_until.getTime() > Date.now()
    const valid = await verifyPassword(user?.hash ?? undefined, password)
    if (throttled) {
      await this.#fail(realm, undefined, req, 'login', 'ip_throttled')
      return { ok: false, reason: 'throttled' }
    }
    if (!user || !valid) {
      await this.#fail(realm, user?.id, req, 'login', user ? 'invalid_password' : 'unknown_user')
      return { ok: false, reason: 'invalid_credentials' }
    }
    if (locked) {
      await this.#events.record(
        requestEvent(realm, req, {
          type: 'auth.login',
          actor: { kind: 'user', id: user.id },
          action: 'login',
          outcome: 'denied',
          reason: 'account_locked',
        }),
      )
      return { ok: false, reason: 'locked' }
    }
    if (user.disabled) {
      await this.#events.record(
        requestEvent(realm, req, {
          type: 'auth.login',
          actor: { kind: 'user', id: user.id },
          action: 'login',
          outcome: 'denied',
          reason: 'account_disabled',
        }),
      )
      return { ok: false, reason: 'disabled' }
    }
    const required =
      user.must_enroll_mfa ||
      user.mfa_policy === 'everyone' ||
      (user.mfa_policy === 'admins' && user.is_admin)
    const mfa: MfaState = user.has_factor ? 'verify' : required ? 'enroll' : 'none'
    await this.#db.transaction(async (tx) => {
      await tx.query('UPDATE iam.users SET failed_logins = 0 WHERE realm = $1 AND id = $2', [
        realm,
        user.id,
      ])
      await this.#events.record(
        requestEvent(realm, req, {
          type: 'auth.login',
          actor: { kind: 'user', id: user.id },
          action: 'login',
          outcome: 'success',
          details: { factor: 'pwd', next: mfa },
        }),
        tx,
      )
    })
    return { ok: true, userId: user.id, mfa }
  }

  async #lockedOut(realm: string, userId: string) {
    const { rows } = await this.#db.query<{ locked: boolean }>(
      `SELECT coalesce(locked_until > now(), false) AS locked FROM iam.users
       WHERE realm = $1 AND id = $2`,
      [realm, userId],
    )
    return rows[0]?.locked ?? true
  }

  /**
   * Step two: a TOTP code or a recovery code. The TOTP step is claimed with a conditional
   * UPDATE, so a code is accepted once even under concurrent submissions.
   */
  async secondFactor(
    realm: string,
    userId: string,
    code: string,
    req: RequestInfo,
  ): Promise<{ ok: true; amr: string[] } | { ok: false; reason: string }> {
    if (await this.#lockedOut(realm, userId)) return { ok: false, reason: 'locked' }
    const trimmed = code.trim()
    if (/^\d{6}$/.test(trimmed)) {
      const { rows } = await this.#db.query<{ id: string; secret: Buffer; counter: number }>(
        `SELECT id, secret, counter FROM iam.mfa_factors
         WHERE realm = $1 AND user_id = $2 AND kind = 'totp' AND confirmed`,
        [realm, userId],
      )
      for (const f of rows) {
        const secret = this.#sealer.open(f.secret, totpAad(realm, f.id)).toString('utf8')
        const step = matchTotp(secret, trimmed)
        if (step === undefined) continue
        const claimed = await this.#db.query(
          `UPDATE iam.mfa_factors SET counter = $3, used_at = now()
           WHERE realm = $1 AND id = $2 AND counter < $3`,
          [realm, f.id, step],
        )
        if (claimed.rowCount === 1)
          return this.#mfaOk(realm, userId, req, ['otp'], { method: 'totp' })
        await this.#fail(realm, userId, req, 'mfa', 'totp_replayed')
        return { ok: false, reason: 'replayed' }
      }
    } else {
      const used = await this.#db.query(
        `UPDATE iam.mfa_factors SET used_at = now()
         WHERE realm = $1 AND user_id = $2 AND kind = 'recovery' AND used_at IS NULL
           AND secret = $3`,
        [realm, userId, hashRecoveryCode(trimmed)],
      )
      if (used.rowCount === 1)
        return this.#mfaOk(realm, userId, req, ['otp'], { method: 'recovery_code' })
    }
    await this.#fail(realm, userId, req, 'mfa', 'invalid_code')
    return { ok: false, reason: 'invalid' }
  }

  async #mfaOk(
    realm: string,
    userId: string,
    req: RequestInfo,
    amr: string[],
    details: Record<string, unknown>,
  ) {
    await this.#db.transaction(async (tx) => {
      await tx.query('UPDATE iam.users SET failed_logins = 0 WHERE realm = $1 AND id = $2', [
        realm,
        userId,
      ])
      await this.#events.record(
        requestEvent(realm, req, {
          type: 'auth.mfa',
          actor: { kind: 'user', id: userId },
          action: 'mfa',
          outcome: 'success',
          details,
        }),
        tx,
      )
    })
    return { ok: true as const, amr }
  }

  /** Which second factors the user has (confirmed TOTP, passkeys, unused recovery codes). */
  async factors(realm: string, userId: string): Promise<UserFactors> {
    const { rows } = await this.#db.query<{ totp: boolean; passkeys: number; recovery: number }>(
      `SELECT
         EXISTS (SELECT 1 FROM iam.mfa_factors WHERE realm = $1 AND user_id = $2 AND kind = 'totp'
                 AND confirmed) AS totp,
         (SELECT count(*)::int FROM iam.webauthn_credentials WHERE realm = $1 AND user_id = $2)
           AS passkeys,
         (SELECT count(*)::int FROM iam.mfa_factors WHERE realm = $1 AND user_id = $2
            AND kind = 'recovery' AND used_at IS NULL) AS recovery`,
      [realm, userId],
    )
    const r = rows[0]!
    return { totp: r.totp, passkeys: r.passkeys, recoveryCodes: r.recovery }
  }

  /** Starts TOTP enrolment: an unconfirmed factor whose secret the user scans once. */
  async beginTotp(realm: string, userId: string) {
    const id = randomUUID()
    const secret = newTotpSecret()
    await this.#db.transaction(async (tx) => {
      await tx.query(
        `DELETE FROM iam.mfa_factors WHERE realm = $1 AND user_id = $2 AND kind = 'totp'
         AND NOT confirmed`,
        [realm, userId],
      )
      await tx.query(
        `INSERT INTO iam.mfa_factors (realm, id, user_id, kind, secret) VALUES ($1, $2, $3, 'totp', $4)`,
        [realm, id, userId, this.#sealer.seal(secret, totpAad(realm, id))],
      )
    })
    return { factorId: id, secret }
  }

  async pendingTotpSecret(realm: string, userId: string, factorId: string) {
    const { rows } = await this.#db.query<{ secret: Buffer }>(
      `SELECT secret FROM iam.mfa_factors WHERE realm = $1 AND id = $2 AND user_id = $3
       AND kind = 'totp' AND NOT confirmed`,
      [realm, factorId, userId],
    )
    const row = rows[0]
    return row
      ? this.#sealer.open(row.secret, totpAad(realm, factorId)).toString('utf8')
      : undefined
  }

  /** Confirms enrolment with a first code; issues recovery codes (returned once, stored hashed). */
  async confirmTotp(
    realm: string,
    userId: string,
    factorId: string,
    code: string,
    req: RequestInfo,
    recoveryCodes: readonly string[],
  ) {
    const secret = await this.pendingTotpSecret(realm, userId, factorId)
    const step = secret ? matchTotp(secret, code.trim()) : undefined
    if (step === undefined) {
      await this.#fail(realm, userId, req, 'mfa', 'enrolment_code_invalid')
      return false
    }
    await this.#db.transaction(async (tx) => {
      await tx.query(
        `UPDATE iam.mfa_factors SET confirmed = true, counter = $3, used_at = now()
         WHERE realm = $1 AND id = $2`,
        [realm, factorId, step],
      )
      await replaceRecoveryCodes(tx, realm, userId, recoveryCodes)
      await tx.query('UPDATE iam.users SET must_enroll_mfa = false WHERE realm = $1 AND id = $2', [
        realm,
        userId,
      ])
      await this.#events.record(
        requestEvent(realm, req, {
          type: 'auth.mfa.enrolled',
          actor: { kind: 'user', id: userId },
          action: 'mfa:EnrollTotp',
          resource: { type: 'MfaFactor', id: factorId },
          outcome: 'success',
        }),
        tx,
      )
    })
    return true
  }
}
