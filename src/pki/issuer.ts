import { createHash, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { type CryptoKey, SIGN_SHA256, x509 } from './keys.ts'

/**
 * The online signing CA: the intermediate certificate and key (and the root certificate it
 * chains to). Builds every certificate profile Dflare issues and signs CRLs. Holds no state
 * beyond its keys; the inventory records what it issued.
 */
export interface IssuedCertificate {
  cert: x509.X509Certificate
  /** Leaf followed by the intermediate: what a TLS endpoint presents. */
  chainPem: string
  serial: string
  subject: string
  sans: SubjectAltName[]
  notBefore: Date
  notAfter: Date
  fingerprint: string
}

export interface SubjectAltName {
  type: 'dns' | 'ip' | 'url'
  value: string
}

export type LeafProfile =
  /** An HTTPS listener certificate (serverAuth) for host names and addresses. */
  | { kind: 'server'; hosts: readonly string[] }
  /** A service identity (X.509-SVID): serverAuth + clientAuth, one SPIFFE URI SAN. */
  | { kind: 'service'; spiffeId: string; hosts?: readonly string[] }

/** Positive 128-bit random serial, lower-case hex without leading zero bytes. */
export function newSerial(): string {
  const b = randomBytes(16)
  b[0] = (b[0]! & 0x7f) | 0x10
  return b.toString('hex')
}

/** Serial numbers as lower-case hex without leading zeros (X509 libs differ on padding). */
export function normalizeSerial(hex: string): string {
  const s = hex.toLowerCase().replace(/^0+/, '')
  return s || '0'
}

export function hostNames(hosts: readonly string[]): SubjectAltName[] {
  return hosts.map((h) => (isIP(h) ? { type: 'ip', value: h } : { type: 'dns', value: h }))
}

export function describe(cert: x509.X509Certificate, chainPem: string): IssuedCertificate {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)
  return {
    cert,
    chainPem,
    serial: normalizeSerial(cert.serialNumber),
    subject: cert.subject,
    sans: (san?.names.items ?? []).map((n) => ({
      type: n.type as SubjectAltName['type'],
      value: n.value,
    })),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    fingerprint: createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex'),
  }
}

/** DER of a non-negative INTEGER (for the CRL number extension, RFC 5280 §5.2.3). */
function derInteger(n: number): ArrayBuffer {
  let hex = n.toString(16)
  if (hex.length % 2) hex = `0${hex}`
  let bytes = Buffer.from(hex, 'hex')
  if (bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes])
  const out = Buffer.concat([Buffer.from([0x02, bytes.length]), bytes])
  return out.buffer.slice(out.byteOffset, out.byteOffset + out.length) as ArrayBuffer
}

export interface CrlEntry {
  serial: string
  revokedAt: Date
  reason: x509.X509CrlReason
}

export class CertificateAuthority {
  readonly root: x509.X509Certificate
  readonly intermediate: x509.X509Certificate
  readonly #key: CryptoKey

  constructor(root: x509.X509Certificate, intermediate: x509.X509Certificate, key: CryptoKey) {
    this.root = root
    this.intermediate = intermediate
    this.#key = key
  }

  get rootPem(): string {
    return this.root.toString('pem')
  }

  /** Intermediate then root: the CA bundle served at /pki/ca. */
  get chainPem(): string {
    return `${this.intermediate.toString('pem')}\n${this.root.toString('pem')}\n`
  }

  async issue(
    profile: LeafProfile,
    publicKey: x509.PublicKey | CryptoKey,
    validity: { notBefore: Date; notAfter: Date },
  ): Promise<IssuedCertificate> {
    // A leaf never outlives the CA that vouches for it.
    const notAfter = new Date(
      Math.min(validity.notAfter.getTime(), this.intermediate.notAfter.getTime()),
    )
    const names: SubjectAltName[] =
      profile.kind === 'server'
        ? hostNames(profile.hosts)
        : [{ type: 'url', value: profile.spiffeId }, ...hostNames(profile.hosts ?? [])]
    if (names.length === 0) throw new Error('a certificate needs at least one name')
    const usages =
      profile.kind === 'server'
        ? [x509.ExtendedKeyUsage.serverAuth]
        : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
    const cn = profile.kind === 'server' ? profile.hosts[0]! : profile.spiffeId.slice(0, 64)
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: [{ CN: [cn] }, { O: ['Dflare'] }],
      issuer: this.intermediate.subjectName,
      notBefore: validity.notBefore,
      notAfter,
      publicKey,
      signingKey: this.#key,
      signingAlgorithm: SIGN_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(usages, false),
        // SPIFFE: the SAN is critical when the subject carries no identity of its own; ours
        // has a CN, so non-critical keeps generic TLS stacks happy.
        new x509.SubjectAlternativeNameExtension(names, false),
        await x509.AuthorityKeyIdentifierExtension.create(this.intermediate, false),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
      ],
    })
    return describe(cert, `${cert.toString('pem')}\n${this.intermediate.toString('pem')}\n`)
  }

  async signCrl(input: {
    entries: readonly CrlEntry[]
    number: number
    thisUpdate: Date
    nextUpdate: Date
  }): Promise<x509.X509Crl> {
    return x509.X509CrlGenerator.create({
      issuer: this.intermediate.subjectName,
      thisUpdate: input.thisUpdate,
      nextUpdate: input.nextUpdate,
      signingKey: this.#key,
      signingAlgorithm: SIGN_SHA256,
      extensions: [
        await x509.AuthorityKeyIdentifierExtension.create(this.intermediate, false),
        new x509.Extension('2.5.29.20', false, derInteger(input.number)),
      ],
      entries: input.entries.map((e) => ({
        serialNumber: e.serial,
        revocationDate: e.revokedAt,
        reason: e.reason,
      })),
    })
  }
}
