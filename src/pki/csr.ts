import { problems } from '../core/errors.ts'
import { type CryptoKeyPair, x509 } from './keys.ts'

/**
 * Parses and checks a PKCS#10 certificate signing request from an external workload. Only its
 * public key is used: subject and requested extensions are never copied into the certificate.
 * A requested SAN that differs from the identity being authorized is refused, so a caller
 * cannot believe it got something it did not.
 */
const MAX_CSR_BYTES = 16_384
const CURVES = new Set(['P-256', 'P-384'])

export async function checkCsr(csrPem: string, identity: string): Promise<x509.PublicKey> {
  if (typeof csrPem !== 'string' || csrPem.length > MAX_CSR_BYTES)
    throw problems.badRequest('csr must be a PEM-encoded PKCS#10 request of at most 16 KiB')
  let csr: x509.Pkcs10CertificateRequest
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem)
  } catch {
    throw problems.badRequest('csr is not a valid PKCS#10 certificate request')
  }
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string }
  if (alg.name !== 'ECDSA' || !CURVES.has(alg.namedCurve ?? ''))
    throw problems.badRequest('csr key must be ECDSA P-256 or P-384')
  let ok = false
  try {
    ok = await csr.verify()
  } catch {
    ok = false
  }
  if (!ok) throw problems.badRequest('csr signature does not verify (proof of possession failed)')
  const san = csr.getExtension('2.5.29.17')
  if (san) {
    const names = new x509.SubjectAlternativeNameExtension(san.rawData).names.items
    if (names.length !== 1 || names[0]!.type !== 'url' || names[0]!.value !== identity)
      throw problems.badRequest('csr requests names other than the identity being issued')
  }
  return csr.publicKey
}

/** Builds a CSR (for agents, the CLI and tests). */
export async function createCsr(keys: CryptoKeyPair, identity?: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: ['dflare workload'] }],
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: identity
      ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }])]
      : [],
  })
  return csr.toString('pem')
}
