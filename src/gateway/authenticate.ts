import { decodeJwt } from 'jose'
import { type Problem, problems } from '../core/errors.ts'
import { type CredentialScope, type Principal, serviceAccountUid, userUid } from './principal.ts'
import { checkSenderConstraint, type SenderContext } from './sender-constraint.ts'

/** Verified access-token claims, as the identity module's verifier returns them. */
export interface VerifiedToken {
  sub: string
  tid: string
  client_id: string
  iat: number
  exp: number
  jti: string
  scope: CredentialScope
  amr: string[]
  auth_time?: number
  sid?: string
  service: boolean
  raw: Record<string, unknown>
}

/** What the gateway needs from identity (the IAM module's IamService satisfies it). */
export interface TokenAuthority {
  issuer(realm: string): string
  /** Signature, typ, iss, aud, exp/nbf, tenant, scope and revocation; throws when rejected. */
  verifyAccessToken(token: string, expectedRealm: string): Promise<VerifiedToken>
  /** Longest access-token lifetime the realm allows (seconds). */
  maxAccessTokenTtl(realm: string): Promise<number>
}

export const PLATFORM_REALM = 'platform'
/** Largest clock skew tolerated on iat (the verifier applies its own smaller leeway to exp/nbf). */
export const MAX_SKEW_SECONDS = 60

const BEARER = /^Bearer ([A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+)$/

function invalidToken(description: string): Problem {
  // RFC 6750 §3: the challenge names the error; the description is generic and leaks nothing.
  return problems.unauthorized(
    description,
    `Bearer realm="dflare", error="invalid_token", error_description="${description}"`,
  )
}

const MALFORMED = Symbol('malformed')
/** The issuer of tokens verified lately, by token (oldest first out). */
const verifiedIssuers = new Map<string, string>()
const MAX_VERIFIED_ISSUERS = 10_000

/**
 * The token's `iss` as it claims it (MALFORMED when it does not decode), only to choose the realm
 * to verify against. A token comes back with every request, and decoding its payload costs a
 * base64 and a JSON parse each time: tokens that verified are remembered (only those, so that
 * nobody can fill the memory with tokens of their own making). Not the verifier's own cache of
 * verified tokens: the authority may be another process (iam/remote-authority.ts), and the realm
 * must be known before the authority is asked.
 */
function unverifiedIssuer(token: string): unknown {
  const known = verifiedIssuers.get(token)
  if (known !== undefined) return known
  try {
    return decodeJwt(token).iss
  } catch {
    return MALFORMED
  }
}

function rememberIssuer(token: string, iss: string) {
  if (verifiedIssuers.has(token)) return
  if (verifiedIssuers.size >= MAX_VERIFIED_ISSUERS)
    verifiedIssuers.delete(verifiedIssuers.keys().next().value!)
  verifiedIssuers.set(token, iss)
}

/**
 * Authenticates a bearer access token for a request addressed to `tenant`. The token must come
 * from that tenant's realm, or from the platform realm (operators; the PDP decides what they may
 * do). The realm to verify against is chosen from the unverified `iss`, then everything is
 * verified against that realm's own issuer and keys.
 */
export async function authenticateBearer(
  authority: TokenAuthority,
  authorization: string | undefined,
  tenant: string | undefined,
  sender: SenderContext,
  now: number,
): Promise<Principal> {
  if (!authorization)
    throw problems.unauthorized('A bearer access token is required', 'Bearer realm="dflare"')
  const m = BEARER.exec(authorization.trim())
  if (!m) throw invalidToken('Malformed bearer credential')
  const token = m[1]!
  const unverifiedIss = unverifiedIssuer(token)
  if (unverifiedIss === MALFORMED) throw invalidToken('Malformed access token')
  const realm =
    unverifiedIss === authority.issuer(PLATFORM_REALM)
      ? PLATFORM_REALM
      : tenant && unverifiedIss === authority.issuer(tenant)
        ? tenant
        : undefined
  if (!realm) throw invalidToken('The token was not issued for this tenant')

  let claims: VerifiedToken
  try {
    claims = await authority.verifyAccessToken(token, realm)
  } catch {
    throw invalidToken('The access token is invalid, expired or revoked')
  }
  rememberIssuer(token, authority.issuer(realm))
  if (claims.iat > now + MAX_SKEW_SECONDS) throw invalidToken('The token was issued in the future')
  if (claims.exp - claims.iat > (await authority.maxAccessTokenTtl(realm)))
    throw invalidToken('The token lifetime exceeds the realm maximum')
  await checkSenderConstraint(claims.raw.cnf, token, sender).catch(() => {
    throw invalidToken('The token is sender-constrained and the proof is missing or wrong')
  })
  return {
    kind: claims.service ? 'service' : 'user',
    uid: claims.service ? serviceAccountUid(realm, claims.client_id) : userUid(realm, claims.sub),
    realm,
    subject: claims.sub,
    scope: claims.scope,
    amr: claims.amr,
    authTime: claims.auth_time,
    sid: claims.sid,
    jti: claims.jti,
    clientId: claims.client_id,
    via: 'bearer',
  }
}
