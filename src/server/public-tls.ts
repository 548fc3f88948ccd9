import { X509Certificate } from 'node:crypto'
import { isIP } from 'node:net'
import { join } from 'node:path'
import type tls from 'node:tls'
import type { Logger } from 'pino'
import type { Kek } from '../pki/kek.ts'
import { ensureServerTls, keepServerTlsFresh } from '../pki/server-identity.ts'
import type { ServiceIdentity } from '../pki/svid.ts'
import { serverTlsOptions, type TlsIdentity, type TlsMinVersion } from '../pki/tls-policy.ts'
import type { ComponentName } from './topology.ts'

/** The public HTTPS listener's certificate: what it presents now and how it stays fresh. */
export interface PublicTls {
  key: string
  cert: string
  /** The bundle client certificates (mTLS callers of the public API) chain to. */
  clientCa: string
  /** The root CA certificate file clients should trust. */
  caPath: string
  /** Keeps the listener's certificate fresh without a restart; returns the stop. */
  keepFresh(server: tls.Server): () => void
}

/** Intermediate(s) of a chain PEM plus the root: the bundle client certificates chain to. */
function clientCaOf(identity: TlsIdentity): string {
  const blocks = identity.cert.match(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
  )
  return [...(blocks ?? []).slice(1), identity.ca].join('\n')
}

/** Whether the listener certificate names `host` (a DNS name or an IP address SAN). */
function certificateNames(identity: TlsIdentity, host: string): boolean {
  const cert = new X509Certificate(identity.cert)
  return isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined
}

/** Components whose certificate a host without the PKI presents publicly, first found wins. */
const FRONT_ORDER = ['gateway', 'iam', 'isolation', 'audit', 'authz'] as const

/**
 * On the PKI host: the CA-issued server certificate for the listen/public host names (renewed at
 * two-thirds of its life). Elsewhere: the certificate of this process's front component (issue it
 * with `--host` naming the public host names; a warning names any host it lacks).
 */
export async function publicTls(options: {
  home: string
  identityDir: string
  hosts: readonly string[]
  /** The PKI's key-encryption key, when the PKI runs in this process. */
  kek: Kek | undefined
  identities: ReadonlyMap<ComponentName, ServiceIdentity>
  minVersion: TlsMinVersion
  log: Logger
}): Promise<PublicTls> {
  const { hosts, kek, minVersion, log } = options
  if (kek) {
    const dir = join(options.home, 'pki')
    const server = await ensureServerTls({ dir, hosts, kek })
    return {
      key: server.key,
      cert: server.cert,
      clientCa: server.chain,
      caPath: server.caPath,
      keepFresh: (listener) =>
        keepServerTlsFresh(listener, server, {
          dir,
          hosts,
          kek,
          minVersion,
          clientCa: true,
          onError: (err) => log.error({ err }, 'server certificate renewal failed'),
        }),
    }
  }
  const name = FRONT_ORDER.find((c) => options.identities.has(c))
  const front = name ? options.identities.get(name) : undefined
  if (!name || !front) throw new Error('no certificate for the public listener')
  const missing = hosts.filter(
    (h) => h !== '0.0.0.0' && h !== '::' && !certificateNames(front.current(), h),
  )
  if (missing.length)
    log.warn(
      { component: name, missing },
      `the public listener presents the ${name} certificate, which does not name every listen/public host; issue it with dflare pki issue --component ${name} --host …`,
    )
  const now = front.current()
  return {
    key: now.key,
    cert: now.cert,
    clientCa: clientCaOf(now),
    caPath: join(options.identityDir, name, 'ca.crt'),
    keepFresh: (listener) =>
      front.onChange((next) =>
        listener.setSecureContext(serverTlsOptions({ ...next, ca: clientCaOf(next), minVersion })),
      ),
  }
}
