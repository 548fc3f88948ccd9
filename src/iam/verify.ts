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
const CLOCK_TOLERANCE_S = 5
/** Tokens whose signature was verified, remembered (oldest first out) up to this many. */
const MAX_VERIFIED_TOKENS = 10_000

/** The claims of a verified payload (scope checked by the caller), a new object each time. */
function claimsOf(payload: Readonly<Record<string, unknown>>, realm: string): AccessTokenClaims {
  return {
    iss: String(payload.iss),
    sub: String(payload.sub),
    aud: payload.aud as string | string[],
    exp: Number(payload.exp),
    iat: Number(payload.iat),
    jti: String(payload.jti),
    client_id: String(payload.client_id),
    tid: realm,
    scope: parseTokenScope(payload[SCOPE_CLAIM])!,
    scopeParam: typeof payload.scope === 'string' ? payload.scope : '',
    amr: Array.isArray(payload.amr) ? payload.amr.map(String) : [],
    acr: typeof payload.acr === 'string' ? payload.acr : undefined,
    auth_time: typeof payload.auth_time === 'number' ? payload.auth_time : undefined,
    sid: typeof payload.sid === 'string' ? payload.sid : undefined,
    service: payload.sub === payload.client_id && !payload.auth_time,
    raw: { ...payload },
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

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
  readonly #verifiedTokens = new Map<
    string,
    { payload: Readonly<Record<string, unknown>>; keys: Cached; key: JWK }
  >()
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
    // The revocation state is synchronised while the signature is checked.
    const synced = this.state.sync()
    synced.catch(() => {})
    const claims = await this.#verified(token, expectedRealm)
    const revoked = await this.state.isRevoked(expectedRealm, claims.jti, claims.sid, synced)
    if (revoked === 'token') throw new TokenRejected('revoked')
    if (revoked === 'session') throw new TokenRejected('session revoked')
    return claims
  }

  /**
   * Signature and claims, remembered per token: the same token string against the same realm
   * key gives the same answer (its header was checked when it was first verified), so a token
   * seen before skips decoding and the RSA verification while its key is still the one
   * published and the token has not expired. Everything that can change (expiry, key set,
   * revocation) is checked on every call.
   */
  async #verified(token: string, realm: string): Promise<AccessTokenClaims> {
    const cacheKey = `${realm}\u0000${token}`
    const hit = this.#verifiedTokens.get(cacheKey)
    if (hit) {
      const keys = await this.#keys(realm, hit.key.kid)
      const current = keys === hit.keys ? hit.key : keys.keys.find((k) => k.kid === hit.key.kid)
      if (
        current !== undefined &&
        current.n === hit.key.n &&
        current.e === hit.key.e &&
        Number(hit.payload.exp) > Date.now() / 1000 - CLOCK_TOLERANCE_S
      )
        return claimsOf(hit.payload, realm)
      this.#verifiedTokens.delete(cacheKey)
    }
    let header: ReturnType<typeof decodeProtectedHeader>
    try {
      header = decodeProtectedHeader(token)
    } catch {
      throw new TokenRejected('malformed')
    }
    if (header.alg !== 'RS256') throw new TokenRejected('algorithm not allowed')
    const kid = header.kid
    if (typeof kid !== 'string') throw new TokenRejected('no key id')
    const keys = await this.#keys(realm, kid)
    if (keys.keys.length === 0) throw new TokenRejected('unknown realm')
    let payload: Record<string, unknown>
    try {
      const result = await jwtVerify(token, keys.set, {
        algorithms: ['RS256'],
        issuer: this.#issuer(realm),
        audience: this.#audience,
        typ: 'at+jwt',
        clockTolerance: CLOCK_TOLERANCE_S,
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
    if (payload.tid !== realm) throw new TokenRejected('wrong tenant')
    if (!parseTokenScope(payload[SCOPE_CLAIM])) throw new TokenRejected('scope claim invalid')
    // Remembered payloads are shared: frozen, and every caller gets claims of its own.
    deepFreeze(payload)
    const key = keys.keys.find((k) => k.kid === kid)
    if (key) {
      if (this.#verifiedTokens.size >= MAX_VERIFIED_TOKENS)
        this.#verifiedTokens.delete(this.#verifiedTokens.keys().next().value!)
      this.#verifiedTokens.set(cacheKey, { payload, keys, key })
    }
    return claimsOf(payload, realm)
  }

  isTokenRevoked(jti: string): Promise<boolean> {
    return this.state.isTokenRevoked(jti)
  }

  isSessionRevoked(realm: string, sid: string): Promise<boolean> {
    return this.state.isSessionRevoked(realm, sid)
  }
}
