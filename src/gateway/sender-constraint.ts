import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose'

/** What a request offers to prove possession of a sender-constrained token. */
export interface SenderContext {
  method: string
  /** The request URL without query and fragment (DPoP `htu`). */
  url: string
  /** The DPoP header, if any. */
  dpop?: string
  /** SHA-256 of the DER client certificate presented on this TLS connection, if any. */
  clientCertSha256?: Buffer
  /** Replay check for DPoP proof ids; returns false if the jti was seen before. */
  remember(jti: string, expiresAt: number): boolean
  now: number
}

const b64url = (b: Buffer) => b.toString('base64url')
const DPOP_MAX_AGE = 60

/**
 * Checks `cnf` (RFC 7800) when the token has one: `x5t#S256` binds it to the TLS client
 * certificate (RFC 8705), `jkt` to a DPoP key (RFC 9449). Throws when the proof is missing or
 * wrong; tokens without `cnf` pass.
 */
export async function checkSenderConstraint(cnf: unknown, token: string, ctx: SenderContext) {
  if (cnf === undefined) return
  if (!cnf || typeof cnf !== 'object') throw new Error('malformed cnf')
  const c = cnf as Record<string, unknown>
  const x5t = c['x5t#S256']
  const jkt = c.jkt
  if (x5t === undefined && jkt === undefined) throw new Error('unsupported cnf')
  if (x5t !== undefined) {
    if (!ctx.clientCertSha256 || b64url(ctx.clientCertSha256) !== x5t)
      throw new Error('certificate thumbprint mismatch')
  }
  if (jkt !== undefined) {
    if (!ctx.dpop) throw new Error('DPoP proof missing')
    const { payload, protectedHeader } = await jwtVerify(ctx.dpop, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'],
      maxTokenAge: DPOP_MAX_AGE,
      clockTolerance: 5,
      currentDate: new Date(ctx.now * 1000),
    })
    if ((await calculateJwkThumbprint(protectedHeader.jwk!)) !== jkt)
      throw new Error('DPoP key mismatch')
    if (payload.htm !== ctx.method || payload.htu !== ctx.url)
      throw new Error('DPoP htm/htu mismatch')
    const ath = b64url(createHash('sha256').update(token).digest())
    if (payload.ath !== ath) throw new Error('DPoP ath mismatch')
    if (typeof payload.jti !== 'string' || !ctx.remember(payload.jti, ctx.now + DPOP_MAX_AGE))
      throw new Error('DPoP proof replayed')
  }
}
