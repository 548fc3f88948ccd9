import { randomUUID } from 'node:crypto'
import { type CryptoKey, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose'
import type { TokenAuthority, VerifiedToken } from '../../src/gateway/authenticate.ts'
import type { CredentialScope } from '../../src/gateway/principal.ts'

/**
 * An RS256 token issuer and verifier per realm, standing in for the IAM module in gateway tests:
 * real signatures and real verification (jose), with revocation lists the tests control.
 */
export class TestAuthority implements TokenAuthority {
  readonly base: string
  readonly audience: string
  readonly revokedJti = new Set<string>()
  readonly revokedSid = new Set<string>()
  #keys = new Map<string, { privateKey: CryptoKey; publicKey: CryptoKey; kid: string }>()
  maxTtl = 900

  constructor(base = 'https://dflare.test') {
    this.base = base
    this.audience = `${base}/api`
  }

  issuer(realm: string) {
    return `${this.base}/realms/${realm}`
  }

  async keyOf(realm: string) {
    let k = this.#keys.get(realm)
    if (!k) {
      const pair = await generateKeyPair('RS256')
      k = { ...pair, kid: `${realm}-k1` }
      this.#keys.set(realm, k)
    }
    return k
  }

  async publicJwk(realm: string) {
    const k = await this.keyOf(realm)
    return { ...(await exportJWK(k.publicKey)), kid: k.kid, alg: 'RS256' }
  }

  async token(
    realm: string,
    opts: {
      sub?: string
      service?: boolean
      scope?: CredentialScope
      amr?: string[]
      authTime?: number
      sid?: string
      ttl?: number
      iat?: number
      claims?: Record<string, unknown>
    } = {},
  ): Promise<string> {
    const k = await this.keyOf(realm)
    const now = opts.iat ?? Math.floor(Date.now() / 1000)
    const sub = opts.sub ?? 'alice'
    const scope = opts.scope ?? { kind: 'org' }
    return new SignJWT({
      tid: realm,
      client_id: opts.service ? sub : 'dflare-cli',
      tscope: scope.kind === 'org' ? 'org' : `${scope.kind}:${scope.id}`,
      amr: opts.amr ?? ['pwd', 'otp', 'mfa'],
      ...(opts.service ? {} : { auth_time: opts.authTime ?? now, sid: opts.sid ?? `sid-${sub}` }),
      ...opts.claims,
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: k.kid })
      .setIssuer(this.issuer(realm))
      .setAudience(this.audience)
      .setSubject(sub)
      .setJti(randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + (opts.ttl ?? 300))
      .sign(k.privateKey)
  }

  async verifyAccessToken(token: string, realm: string): Promise<VerifiedToken> {
    const k = await this.keyOf(realm)
    const { payload } = await jwtVerify(token, k.publicKey, {
      algorithms: ['RS256'],
      issuer: this.issuer(realm),
      audience: this.audience,
      typ: 'at+jwt',
      clockTolerance: 5,
    })
    if (payload.tid !== realm) throw new Error('wrong tenant')
    if (this.revokedJti.has(String(payload.jti))) throw new Error('revoked')
    if (payload.sid && this.revokedSid.has(String(payload.sid))) throw new Error('session revoked')
    const t = String(payload.tscope)
    const scope: CredentialScope =
      t === 'org' ? { kind: 'org' } : { kind: t.split(':')[0] as 'domain', id: t.split(':')[1]! }
    return {
      sub: String(payload.sub),
      tid: realm,
      client_id: String(payload.client_id),
      iat: Number(payload.iat),
      exp: Number(payload.exp),
      jti: String(payload.jti),
      scope,
      amr: (payload.amr as string[]) ?? [],
      auth_time: payload.auth_time as number | undefined,
      sid: payload.sid as string | undefined,
      service: payload.sub === payload.client_id,
      raw: payload,
    }
  }

  async maxAccessTokenTtl() {
    return this.maxTtl
  }
}
