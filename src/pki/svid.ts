import { createPrivateKey, X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, rename } from 'node:fs/promises'
import https from 'node:https'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { createCsr } from './csr.ts'
import { writePublicFile, writeSecretFile } from './kek.ts'
import { generateEcKeyPair, privateKeyToPem, x509 } from './keys.ts'
import { renewalProof } from './renewal.ts'
import type { PkiService } from './service.ts'
import type { IdentitySource, TlsIdentity, TlsMinVersion } from './tls-policy.ts'

/**
 * A component's X.509-SVID, kept current: a fresh key and certificate are obtained at
 * two-thirds of the certificate's lifetime, and listeners/agents subscribed through
 * `onChange` switch to it for new connections without dropping open ones. A failed renewal
 * is retried with backoff while the current certificate is still valid.
 */
export interface Issued {
  /** Leaf then intermediate. */
  chainPem: string
  /** Root(s) to trust. */
  caPem: string
}

/** Obtains a certificate for a CSR; `current` is the identity being renewed, if any. */
export type CertificateSource = (csr: string, current?: TlsIdentity) => Promise<Issued>

export class ServiceIdentity implements IdentitySource {
  #identity: TlsIdentity
  #notBefore: number
  #notAfter: number
  readonly #source: CertificateSource
  readonly #listeners = new Set<(identity: TlsIdentity) => void>()
  readonly #log: Logger | undefined
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  #rotating: Promise<void> | undefined

  private constructor(identity: TlsIdentity, source: CertificateSource, log?: Logger) {
    this.#identity = identity
    this.#source = source
    this.#log = log
    const leaf = new x509.X509Certificate(identity.cert)
    this.#notBefore = leaf.notBefore.getTime()
    this.#notAfter = leaf.notAfter.getTime()
  }

  /** Starts from an existing identity (files from `dflare pki issue`) or obtains a new one. */
  static async create(options: {
    source: CertificateSource
    initial?: TlsIdentity
    log?: Logger
  }): Promise<ServiceIdentity> {
    const initial = options.initial ?? (await obtain(options.source))
    const svid = new ServiceIdentity(initial, options.source, options.log)
    svid.#schedule()
    return svid
  }

  current(): TlsIdentity {
    return this.#identity
  }

  get notAfter(): Date {
    return new Date(this.#notAfter)
  }

  get serial(): string {
    return new x509.X509Certificate(this.#identity.cert).serialNumber.toLowerCase()
  }

  onChange(fn: (identity: TlsIdentity) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** Renews now (also what the schedule calls). Concurrent calls share one renewal. */
  rotate(): Promise<void> {
    this.#rotating ??= (async () => {
      try {
        const next = await obtain(this.#source, this.#identity)
        const leaf = new x509.X509Certificate(next.cert)
        this.#identity = next
        this.#notBefore = leaf.notBefore.getTime()
        this.#notAfter = leaf.notAfter.getTime()
        for (const fn of this.#listeners) fn(next)
        this.#log?.info(
          { serial: leaf.serialNumber, notAfter: leaf.notAfter },
          'service certificate renewed',
        )
      } finally {
        this.#rotating = undefined
      }
    })()
    return this.#rotating
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
  }

  #schedule(delay?: number) {
    if (this.#stopped) return
    const renewAt = this.#notBefore + ((this.#notAfter - this.#notBefore) * 2) / 3
    const wait = delay ?? Math.max(renewAt - Date.now(), 1000)
    clearTimeout(this.#timer)
    this.#timer = setTimeout(
      () => {
        this.rotate().then(
          () => this.#schedule(),
          (err: Error) => {
            const left = this.#notAfter - Date.now()
            this.#log?.error(
              { err: err.message, msLeft: left },
              'service certificate renewal failed',
            )
            // Retry at a twentieth of the remaining life, between 1 s and 5 min.
            this.#schedule(Math.min(Math.max(left / 20, 1000), 300_000))
          },
        )
      },
      Math.min(wait, 2_147_483_647),
    )
    this.#timer.unref()
  }
}

async function obtain(source: CertificateSource, current?: TlsIdentity): Promise<TlsIdentity> {
  const keys = await generateEcKeyPair()
  const csr = await createCsr(keys)
  const issued = await source(csr, current)
  return { cert: issued.chainPem, key: await privateKeyToPem(keys.privateKey), ca: issued.caPem }
}

/**
 * A component on another host: starts from the files `dflare pki issue --out DIR` wrote
 * (cert.pem, key.pem, ca.crt), renews remotely against the PKI's public endpoint, and writes
 * each renewed certificate and key back (key 0600), so a restart resumes from the newest one.
 */
export async function fileServiceIdentity(options: {
  dir: string
  pkiUrl: string | URL
  minVersion?: TlsMinVersion
  log?: Logger
}): Promise<ServiceIdentity> {
  const path = (f: string) => join(options.dir, f)
  const read = (f: string) => readFile(path(f), 'utf8')
  const initial: TlsIdentity = {
    cert: await read('cert.pem'),
    key: await read('key.pem'),
    ca: await read('ca.crt'),
  }
  // A crash between the two renames below leaves the new certificate with the old key; the
  // new key is then still in key.pem.next.
  if (!matches(initial.cert, initial.key) && existsSync(path('key.pem.next'))) {
    initial.key = await read('key.pem.next')
    if (!matches(initial.cert, initial.key))
      throw new Error(`${options.dir}: key.pem does not match cert.pem`)
    await rename(path('key.pem.next'), path('key.pem'))
  }
  const remote = remoteSource(options.pkiUrl, {
    rootPem: initial.ca,
    minVersion: options.minVersion,
  })
  const svid = await ServiceIdentity.create({ initial, source: remote, log: options.log })
  svid.onChange((next) => {
    void (async () => {
      await writeSecretFile(path('key.pem.next'), next.key)
      await writePublicFile(path('cert.pem.next'), next.cert)
      await rename(path('cert.pem.next'), path('cert.pem'))
      await rename(path('key.pem.next'), path('key.pem'))
    })().catch((err: Error) =>
      options.log?.error({ err: err.message }, 'could not persist the renewed certificate'),
    )
  })
  return svid
}

function matches(certPem: string, keyPem: string): boolean {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem))
  } catch {
    return false
  }
}

/** In-process source: the component runs next to the PKI service. */
export function localSource(service: PkiService, component: string): CertificateSource {
  return async (csr, current) => {
    const serial = current ? new x509.X509Certificate(current.cert).serialNumber : undefined
    const r = serial
      ? await service.renew(serial, { csr })
      : await service.issueComponent({ name: component, csr })
    return { chainPem: r.chainPem, caPem: service.ca.rootPem }
  }
}

/**
 * Remote source: renews against the PKI's public endpoint (`POST /pki/renew`) with a proof of
 * possession of the current key. The first certificate comes from the operator
 * (`dflare pki issue --component NAME --out DIR`).
 */
export function remoteSource(
  baseUrl: string | URL,
  options: { rootPem: string; minVersion?: TlsMinVersion },
): CertificateSource {
  return async (csr, current) => {
    if (!current) throw new Error('remote renewal needs a current certificate (dflare pki issue)')
    const proof = await renewalProof(current, csr)
    const body = JSON.stringify({ csr, proof })
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(
        new URL('/pki/renew', baseUrl),
        {
          method: 'POST',
          ca: options.rootPem,
          minVersion: options.minVersion ?? 'TLSv1.2',
          agent: false,
          timeout: 15_000,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (r) => {
          const chunks: Buffer[] = []
          r.on('data', (c: Buffer) => chunks.push(c))
          r.on('end', () =>
            resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          )
          r.on('error', reject)
        },
      )
      req.on('timeout', () => req.destroy(new Error('renewal request timed out')))
      req.on('error', reject)
      req.end(body)
    })
    if (res.status !== 200) throw new Error(`renewal refused: HTTP ${res.status}`)
    const parsed = JSON.parse(res.body) as { chain: string; ca: string }
    return { chainPem: parsed.chain, caPem: parsed.ca }
  }
}
