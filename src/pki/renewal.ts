import { createHash, createPrivateKey } from 'node:crypto'
import { CompactSign, compactVerify, decodeProtectedHeader, importX509 } from 'jose'
import { problems } from '../core/errors.ts'
import type { CertificateAuthority } from './issuer.ts'
import { x509 } from './keys.ts'

/**
 * Self-renewal by proof of possession. The holder of a valid certificate signs
 * `{ aud, csr_sha256, iat }` with its current key (compact JWS, ES256, certificate chain in
 * `x5c`); the PKI verifies the chain and signature and issues a successor with the same
 * identity for the CSR's key. This works through any TLS terminator, needs no operator, and
 * a revoked or expired certificate cannot renew itself.
 */
const AUDIENCE = 'dflare-pki-renew'
const MAX_SKEW_S = 300

function csrHash(csr: string): string {
  return createHash('sha256').update(csr.trim()).digest('base64url')
}

export async function renewalProof(current: { cert: string; key: string }, csr: string) {
  const certs = x509.PemConverter.decode(current.cert).map((d) => Buffer.from(d).toString('base64'))
  const payload = JSON.stringify({
    aud: AUDIENCE,
    csr_sha256: csrHash(csr),
    iat: Math.floor(Date.now() / 1000),
  })
  return new CompactSign(new TextEncoder().encode(payload))
    .setProtectedHeader({ alg: 'ES256', x5c: certs })
    .sign(createPrivateKey(current.key))
}

/** Verifies a renewal proof; returns the certificate it was made with. */
export async function verifyRenewalProof(
  ca: CertificateAuthority,
  proof: string,
  csr: string,
  now: Date,
): Promise<x509.X509Certificate> {
  const refused = () => problems.forbidden('renewal proof is not valid')
  if (typeof proof !== 'string' || proof.length > 16_384) throw refused()
  let leaf: x509.X509Certificate
  try {
    const header = decodeProtectedHeader(proof)
    if (header.alg !== 'ES256' || !Array.isArray(header.x5c) || header.x5c.length < 1)
      throw refused()
    leaf = new x509.X509Certificate(Buffer.from(header.x5c[0]!, 'base64'))
  } catch {
    throw refused()
  }
  const chained = await leaf.verify({ publicKey: ca.intermediate, date: now }).catch(() => false)
  if (!chained || leaf.notAfter <= now || leaf.notBefore > now) throw refused()
  try {
    const key = await importX509(leaf.toString('pem'), 'ES256')
    const { payload } = await compactVerify(proof, key, { algorithms: ['ES256'] })
    const claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>
    const iat = Number(claims.iat)
    if (
      claims.aud !== AUDIENCE ||
      claims.csr_sha256 !== csrHash(csr) ||
      !Number.isFinite(iat) ||
      Math.abs(now.getTime() / 1000 - iat) > MAX_SKEW_S
    )
      throw refused()
  } catch {
    throw refused()
  }
  return leaf
}
