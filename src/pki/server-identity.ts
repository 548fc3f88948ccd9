import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { SecureContextOptions } from 'node:tls'
import { openCa } from './ca-store.ts'
import { normalizeSerial } from './issuer.ts'
import { type Kek, loadKek, writePublicFile, writeSecretFile } from './kek.ts'
import { generateEcKeyPair, privateKeyToPem, x509 } from './keys.ts'
import { serverTlsOptions, type TlsMinVersion } from './tls-policy.ts'

/**
 * The HTTPS listener identity: on first boot the two-level internal CA (see ca-store.ts) and a
 * server certificate for the listen/public hosts, issued by the intermediate and stored under
 * `$DFLARE_HOME/pki` (server.key 0600). Later starts reuse it; it is re-issued when a host is
 * missing, it was not issued by the current intermediate, or it has less than a third of its
 * lifetime left.
 */
export interface ServerTls {
  /** PEM of the root CA certificate ($DFLARE_HOME/pki/ca.crt). */
  ca: string
  /** Server certificate followed by the intermediate (the chain a TLS server presents). */
  cert: string
  key: string
  caPath: string
  /** Intermediate then root. */
  chain: string
  serial: string
  notAfter: Date
  /** When the certificate should be re-issued (two-thirds of its lifetime). */
  renewAt: Date
}

const SERVER_DAYS = 90

function covers(
  cert: x509.X509Certificate,
  intermediate: x509.X509Certificate,
  hosts: readonly string[],
  now: Date,
): boolean {
  if (cert.issuer !== intermediate.subject) return false
  const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime()
  if (cert.notAfter.getTime() - now.getTime() < lifetime / 3) return false
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)
  const have = new Set(san?.names.items.map((n) => n.value.toLowerCase()) ?? [])
  return hosts.every((h) => have.has(h.toLowerCase()))
}

export async function ensureServerTls(options: {
  dir: string
  hosts: readonly string[]
  now?: Date
  /** Key-encryption key; defaults to the generated `$DFLARE_HOME/kek` next to `dir`. */
  kek?: Kek
}): Promise<ServerTls> {
  const { dir, hosts } = options
  if (hosts.length === 0) throw new Error('ensureServerTls needs at least one host')
  const now = options.now ?? new Date()
  const kek = options.kek ?? (await loadKek({}, dirname(dir)))
  const { ca } = await openCa({ dir, kek, now })
  const paths = { cert: join(dir, 'server.crt'), key: join(dir, 'server.key') }
  let certPem = existsSync(paths.cert) ? await readFile(paths.cert, 'utf8') : undefined
  let keyPem = existsSync(paths.key) ? await readFile(paths.key, 'utf8') : undefined
  let leaf = certPem ? new x509.X509Certificate(certPem) : undefined
  if (!leaf || !keyPem || !covers(leaf, ca.intermediate, hosts, now)) {
    const keys = await generateEcKeyPair()
    const issued = await ca.issue({ kind: 'server', hosts }, keys.publicKey, {
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + SERVER_DAYS * 86_400_000),
    })
    leaf = issued.cert
    certPem = leaf.toString('pem')
    keyPem = await privateKeyToPem(keys.privateKey)
    await writeSecretFile(paths.key, keyPem)
    await writePublicFile(paths.cert, `${certPem}\n`)
  }
  const life = leaf.notAfter.getTime() - leaf.notBefore.getTime()
  return {
    ca: ca.rootPem,
    cert: `${leaf.toString('pem')}\n${ca.intermediate.toString('pem')}\n`,
    key: keyPem,
    caPath: join(dir, 'ca.crt'),
    chain: ca.chainPem,
    serial: normalizeSerial(leaf.serialNumber),
    notAfter: leaf.notAfter,
    renewAt: new Date(leaf.notBefore.getTime() + (life * 2) / 3),
  }
}

type SecureServer = { setSecureContext(options: SecureContextOptions): void }

export interface ServerTlsOptions {
  dir: string
  hosts: readonly string[]
  kek: Kek
  minVersion?: TlsMinVersion
  /** The listener verifies client certificates against the CA chain: keep doing so on reload. */
  clientCa?: boolean
}

/**
 * Re-runs ensureServerTls and, when it issued a new certificate, installs it on the running
 * listener (new connections get it; open ones are not dropped). Returns the current identity.
 */
export async function reloadServerTls(
  server: SecureServer,
  current: ServerTls,
  options: ServerTlsOptions & { now?: Date },
): Promise<ServerTls> {
  const next = await ensureServerTls(options)
  if (next.serial !== current.serial)
    server.setSecureContext(
      serverTlsOptions({
        cert: next.cert,
        key: next.key,
        ca: options.clientCa ? next.chain : undefined,
        minVersion: options.minVersion,
      }),
    )
  return next
}

/** Renews the listener's certificate at its `renewAt`, hot-reloading it; returns a stop hook. */
export function keepServerTlsFresh(
  server: SecureServer,
  initial: ServerTls,
  options: ServerTlsOptions & {
    onRenewed?: (tls: ServerTls) => void
    onError?: (err: Error) => void
  },
): () => void {
  let current = initial
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const schedule = (ms: number) => {
    if (stopped) return
    timer = setTimeout(tick, Math.min(Math.max(ms, 1000), 2_147_483_647)).unref()
  }
  const tick = () => {
    if (Date.now() < current.renewAt.getTime())
      return schedule(current.renewAt.getTime() - Date.now())
    reloadServerTls(server, current, options).then(
      (next) => {
        if (next.serial !== current.serial) options.onRenewed?.(next)
        current = next
        schedule(current.renewAt.getTime() - Date.now())
      },
      (err: Error) => {
        options.onError?.(err)
        schedule(60_000)
      },
    )
  }
  schedule(current.renewAt.getTime() - Date.now())
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}
