import type { JWK } from 'jose'
import type { Db } from '../core/db/index.ts'
import { issuerOf } from './issuer.ts'
import { publishedKeys } from './keys.ts'
import type { AccessTokenClaims, AccessTokenVerifier } from './verify.ts'

/** What the gateway needs from identity, nothing more. */
export interface IamService {
  /** Whether the realm exists and is enabled, as the database was when the call began. */
  realmExists(realm: string): Promise<boolean>
  issuer(realm: string): string
  /** Audience of platform API access tokens. */
  readonly apiAudience: string
  /** Public keys currently published for the realm (current, next, overlapping previous). */
  jwks(realm: string): Promise<{ keys: JWK[] }>
  /**
   * Full verification (signature, iss, aud, typ, exp/nbf, tenant, scope, revocation). Revocation
   * and realm state (here and below) are as new as the database was when the call began, or when
   * the API request it serves arrived, whichever process changed them.
   */
  verifyAccessToken(token: string, expectedRealm: string): Promise<AccessTokenClaims>
  isSessionRevoked(realm: string, sid: string): Promise<boolean>
  isTokenRevoked(jti: string): Promise<boolean>
  /** Seconds; a revocation is visible to the gateway within this long at most. */
  maxAccessTokenTtl(realm: string): Promise<number>
}

export function createIamService(opts: {
  db: Db
  publicUrl: URL
  apiAudience: string
  verifier: AccessTokenVerifier
  defaultAccessTokenTtlMs: number
}): IamService {
  const { db, publicUrl, verifier } = opts
  return {
    apiAudience: opts.apiAudience,
    async realmExists(realm) {
      const r = await verifier.state.realm(realm)
      return r !== undefined && !r.disabled
    },
    issuer: (realm) => issuerOf(publicUrl, realm),
    jwks: async (realm) => ({ keys: await publishedKeys(db, realm) }),
    verifyAccessToken: (token, realm) => verifier.verify(token, realm),
    isSessionRevoked: (realm, sid) => verifier.isSessionRevoked(realm, sid),
    isTokenRevoked: (jti) => verifier.isTokenRevoked(jti),
    async maxAccessTokenTtl(realm) {
      const r = await verifier.state.realm(realm)
      return Math.min(900, r?.accessTokenTtl ?? Math.round(opts.defaultAccessTokenTtlMs / 1000))
    },
  }
}
