import { createLocalJWKSet, decodeProtectedHeader, errors, type JWK, jwtVerify } from 'jose'
import type { Db } from '../core/db/index.ts'
import { GatewayState } from './gateway-state.ts'
import { publishedKeys } from './keys.ts'
import { parseTokenScope, SCOPE_CLAIM, type TokenScope } from './scope.ts'

/** The verified content of a platform access token (RFC 9068). */
export interface AccessTokenClaims {
  iss: string
  sub: string
  aud: string | string[]
  exp: number
  iat: number
  jti: string
  client_id: string
  /** Tenant (realm) that issued the token. */
  tid: string
  scope: TokenScope
  scopeParam: string
  amr: string[]
  acr?: string
  auth_time?: number
  sid?: string
  /** True when the subject is a service account (client credentials), not a person. */
  service: boolean
  raw: Record<string, unknown>
}

export class TokenRejected extends Error {
  override name = 'TokenRejected'
  readonly reason: string
  constructor(reason: string) {
    super(`access token rejected: ${reason}`)
    this.reason = reason
  }
}

const KEYS_TTL_MS = 30_000
const REFRESH_MIN_MS = 5_000

type Cached = { at: number; keys: JWK[]; set: ReturnType<typeof createLocalJWKSet> }

/**
 * Verifies access tokens for the gateway: RS256 only, `typ: at+jwt`, the realm's own issuer and
 * published keys, the platform API audience, exp/nbf with no leeway beyond 5 s, a known tenant,
 * exactly one scope, and not revoked (by jti or by session). Any doubt rejects.
 */
export class AccessTokenVerifier {
  readonly #db: Db
  readonly #issuer: (realm: string) => string
  readonly #audience: string
  readonly #cache = new Map<string, Cached>()
  /** Revocations and realm state (from memory once started, always as new as the database). */
  readonly state: GatewayState

  constructor(
    db: Db,
    issuer: (realm: string) => string,
    audience: string,
    state: GatewayState = new GatewayState(db),
  ) {
    this.#db = db
    this.#issuer = issuer
    this.#audience = audience
    this.state = state
  }

  async #keys(realm: string, kid: string | undefined) {
    const now = Date.now()
    let c = this.#cache.get(realm)
    const stale = !c || now - c.at > KEYS_TTL_MS
    const unknownKid = c && kid !== undefined && !c.keys.some((k) => k.kid === kid)
    if (stale || (unknownKid && now - c!.at > REFRESH_MIN_MS)) {
      const keys = await publishedKeys(this.#db, realm)
      c = { at: now, keys, set: createLocalJWKSet({ keys }) }
      this.#cache.set(realm, c)
      if (this.#cache.size > 10_000) this.#cache.delete(this.#cache.keys().next().value!)
    }
    return c!
  }

  async verify(token: string, expectedRealm: string): Promise<AccessTokenClaims> {
    let header: ReturnType<typeof decodeProtectedHeader>
    try {
      header = decodeProtectedHeader(token)
    } catch {
      throw new TokenRejected('malformed')
    }
    if (header.alg !== 'RS256') throw new TokenRejected('algorithm not allowed')
    if (typeof header.kid !== 'string') throw new TokenRejected('no key id')
    // The revocation state is synchronised while the signature is checked; started here, in
    // the caller's synchronous run, so that the caller's other IAM checks can share the read.
    const synced = this.state.sync()
    synced.catch(() => {})
    const keys = await this.#keys(expectedRealm, header.kid)
    if (keys.keys.length === 0) throw new TokenRejected('unknown realm')
    let payload: Record<string, unknown>
    try {
      const result = await jwtVerify(token, keys.set, {
        algorithms: ['RS256'],
        issuer: this.#issuer(expectedRealm),
        audience: this.#audience,
        typ: 'at+jwt',
        clockTolerance: 5,
        requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id', 'tid', SCOPE_CLAIM],
      })
      payload = result.payload as Record<string, unknown>
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw new TokenRejected('expired')
      if (err instanceof errors.JWKSNoMatchingKey) throw new TokenRejected('unknown key')
      if (err instanceof errors.JWTClaimValidationFailed)
        throw new TokenRejected(`claim ${err.claim} invalid`)
      throw new TokenRejected('signature or format invalid')
    }
    if (payload.tid !== expectedRealm) throw new TokenRejected('wrong tenant')
    const scope = parseTokenScope(payload[SCOPE_CLAIM])
    if (!scope) throw new TokenRejected('scope claim invalid')
    const jti = String(payload.jti)
    const sid = typeof payload.sid === 'string' ? payload.sid : undefined
    const revoked = await this.state.isRevoked(expectedRealm, jti, sid, synced)
    if (revoked === 'token') throw new TokenRejected('revoked')
    if (revoked === 'session') throw new TokenRejected('session revoked')
    return {
      iss: String(payload.iss),
      sub: String(payload.sub),
      aud: payload.aud as string | string[],
      exp: Number(payload.exp),
      iat: Number(payload.iat),
      jti,
      client_id: String(payload.client_id),
      tid: expectedRealm,
      scope,
      scopeParam: typeof payload.scope === 'string' ? payload.scope : '',
      amr: Array.isArray(payload.amr) ? payload.amr.map(String) : [],
      acr: typeof payload.acr === 'string' ? payload.acr : undefined,
      auth_time: typeof payload.auth_time === 'number' ? payload.auth_time : undefined,
      sid,
      service: payload.sub === payload.client_id && !payload.auth_time,
      raw: payload,
    }
  }

  isTokenRevoked(jti: string): Promise<boolean> {
    return this.state.isTokenRevoked(jti)
  }

  isSessionRevoked(realm: string, sid: string): Promise<boolean> {
    return this.state.isSessionRevoked(realm, sid)
  }
}
