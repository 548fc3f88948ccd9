import type { TLSSocket } from 'node:tls'
import { type Principal, serviceAccountUid } from '../gateway/principal.ts'
import { normalizeSerial } from './issuer.ts'
import { spiffeIdOfAltNames } from './spiffe.ts'
import type { RevocationChecker } from './tls-policy.ts'

/**
 * The gateway's `identifyPeer`: turns a verified client certificate of this CA into a service
 * principal. Components become `ServiceAccount::"platform/spiffe:component/<name>"` in the
 * platform realm; tenant workloads `ServiceAccount::"<tenant>/spiffe:<path>"` in their tenant's
 * realm. Anything doubtful (untrusted chain, outside validity, other trust domain, revoked or no
 * fresh CRL) yields no principal, so the request needs a bearer token instead. The PDP decides
 * what the principal may do.
 */
export function mtlsPrincipal(options: {
  trustDomain: string
  revocation: RevocationChecker
  now?: () => Date
}): (socket: TLSSocket) => Principal | undefined {
  return (socket) => {
    if (!socket.authorized || typeof socket.getPeerCertificate !== 'function') return undefined
    const cert = socket.getPeerCertificate(false)
    if (!cert?.raw) return undefined
    const now = (options.now?.() ?? new Date()).getTime()
    if (Date.parse(cert.valid_to) <= now || Date.parse(cert.valid_from) > now) return undefined
    const id = spiffeIdOfAltNames(cert.subjectaltname)
    if (!id || id.trustDomain !== options.trustDomain) return undefined
    if (options.revocation.status(normalizeSerial(cert.serialNumber)) !== 'good') return undefined
    const realm = id.kind === 'component' ? 'platform' : id.tenant
    const clientId =
      id.kind === 'component' ? `spiffe:component/${id.name}` : `spiffe:${id.path.join('/')}`
    return {
      kind: 'service',
      uid: serviceAccountUid(realm, clientId),
      realm,
      subject: id.uri,
      scope: { kind: 'org' },
      amr: ['mtls'],
      clientId,
      via: 'mtls',
    }
  }
}
