import { x509 } from './keys.ts'

/**
 * SPIFFE identities (X.509-SVID): `spiffe://<trust-domain>/component/<name>` for platform
 * components and `spiffe://<trust-domain>/tenant/<tenant>/<path…>` for tenant workloads.
 * Parsing is strict: anything that is not exactly one of these shapes is rejected.
 */
export type SpiffeId =
  | { kind: 'component'; trustDomain: string; name: string; uri: string }
  | { kind: 'tenant'; trustDomain: string; tenant: string; path: string[]; uri: string }

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}$/
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/

export function componentId(trustDomain: string, name: string): string {
  if (!NAME.test(name)) throw new Error('component names are lower-case letters, digits and -')
  return `spiffe://${trustDomain}/component/${name}`
}

export function tenantWorkloadId(trustDomain: string, tenant: string, path: string[]): string {
  const uri = `spiffe://${trustDomain}/tenant/${tenant}/${path.join('/')}`
  if (!parseSpiffeId(uri)) throw new Error('invalid tenant workload identity')
  return uri
}

export function parseSpiffeId(uri: string): SpiffeId | undefined {
  if (uri.length > 2048) return undefined
  const m = /^spiffe:\/\/([^/?#]+)(\/[^?#]*)$/.exec(uri)
  if (!m) return undefined
  const trustDomain = m[1]!
  if (!TRUST_DOMAIN.test(trustDomain) || trustDomain.includes('..')) return undefined
  const segs = m[2]!.slice(1).split('/')
  if (segs.some((s) => !SEGMENT.test(s) || s === '.' || s === '..')) return undefined
  if (segs[0] === 'component' && segs.length === 2 && NAME.test(segs[1]!))
    return { kind: 'component', trustDomain, name: segs[1]!, uri }
  if (segs[0] === 'tenant' && segs.length >= 3 && NAME.test(segs[1]!))
    return { kind: 'tenant', trustDomain, tenant: segs[1]!, path: segs.slice(2), uri }
  return undefined
}

/** The certificate's SPIFFE id: its URI SANs must be exactly one valid spiffe:// URI. */
export function spiffeIdOfCertificate(cert: x509.X509Certificate): SpiffeId | undefined {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)
  const uris = san?.names.items.filter((n) => n.type === 'url') ?? []
  if (uris.length !== 1) return undefined
  return parseSpiffeId(uris[0]!.value)
}

/** Same, from node's `getPeerCertificate().subjectaltname` string ("URI:spiffe://…, DNS:…"). */
export function spiffeIdOfAltNames(subjectaltname: string | undefined): SpiffeId | undefined {
  if (!subjectaltname) return undefined
  const uris = subjectaltname
    .split(', ')
    .filter((e) => e.startsWith('URI:'))
    .map((e) => e.slice(4))
  if (uris.length !== 1) return undefined
  return parseSpiffeId(uris[0]!)
}
