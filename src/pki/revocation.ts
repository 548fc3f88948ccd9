import { createHash } from 'node:crypto'
import https from 'node:https'
import type { Clock } from '../core/clock.ts'
import { normalizeSerial } from './issuer.ts'
import { x509 } from './keys.ts'
import type { RevocationChecker, TlsMinVersion } from './tls-policy.ts'

/**
 * The revocation state an mTLS server enforces: the CA's CRL, fetched on a schedule and
 * accepted only when signed by an intermediate that chains to the locally trusted root, not
 * older than the one already held (no rollback), and not past its nextUpdate. Without such a
 * CRL every peer is refused (`unknown`): fail closed.
 */
export interface CrlDocument {
  /** The CRL, PEM or DER. */
  crl: string | Uint8Array
  /** PEM of the intermediate(s) that may have signed it (the /pki/ca bundle). */
  issuers: string
}

export type CrlSource = () => Promise<CrlDocument>

const CRL_NUMBER = '2.5.29.20'

function crlNumber(crl: x509.X509Crl): number {
  const ext = crl.getExtension(CRL_NUMBER)
  if (!ext) return 0
  const v = new Uint8Array(ext.value)
  // DER INTEGER: 0x02 len bytes…
  let n = 0
  for (let i = 2; i < 2 + v[1]!; i++) n = n * 256 + v[i]!
  return n
}

export class CrlChecker implements RevocationChecker {
  readonly #root: x509.X509Certificate
  readonly #source: CrlSource
  readonly #clock: Clock
  readonly #refreshMs: number
  readonly #onError: (err: Error) => void
  #revoked = new Set<string>()
  #nextUpdate = 0
  #number = -1
  #digest = ''
  #timer: NodeJS.Timeout | undefined
  readonly #listeners = new Set<() => void>()

  constructor(options: {
    rootPem: string
    source: CrlSource
    refreshMs: number
    clock?: Clock
    onError?: (err: Error) => void
  }) {
    this.#root = new x509.X509Certificate(options.rootPem)
    this.#source = options.source
    this.#clock = options.clock ?? { now: () => new Date() }
    this.#refreshMs = options.refreshMs
    this.#onError = options.onError ?? (() => {})
  }

  status(serialHex: string): 'good' | 'revoked' | 'unknown' {
    if (this.#clock.now().getTime() >= this.#nextUpdate) return 'unknown'
    return this.#revoked.has(normalizeSerial(serialHex)) ? 'revoked' : 'good'
  }

  /** Number of the CRL in force (-1 before the first one). */
  get number(): number {
    return this.#number
  }

  /** Fetches and installs the current CRL; throws (keeping the old one) when it is unusable. */
  async refresh(): Promise<void> {
    const doc = await this.#source()
    const now = this.#clock.now()
    // Unchanged bytes: nothing to parse or verify again (large CRLs are slow to parse).
    const digest = createHash('sha256').update(doc.crl).update(doc.issuers).digest('hex')
    if (digest === this.#digest && now.getTime() < this.#nextUpdate) return
    const crl = new x509.X509Crl(
      typeof doc.crl === 'string' ? doc.crl : (doc.crl.slice().buffer as ArrayBuffer),
    )
    const issuers = x509.PemConverter.decode(doc.issuers).map((d) => new x509.X509Certificate(d))
    let signer: x509.X509Certificate | undefined
    for (const issuer of issuers) {
      if (issuer.subject !== crl.issuer) continue
      if (!(await issuer.verify({ publicKey: this.#root, date: now }))) continue
      if (await crl.verify({ publicKey: issuer })) signer = issuer
    }
    if (!signer) throw new Error('CRL is not signed by an intermediate of the trusted root')
    const next = crl.nextUpdate?.getTime() ?? 0
    if (next <= now.getTime()) throw new Error('CRL is past its nextUpdate')
    if (crl.thisUpdate.getTime() > now.getTime() + 300_000)
      throw new Error('CRL is from the future')
    const number = crlNumber(crl)
    if (number < this.#number) throw new Error('CRL number went backwards (rollback refused)')
    this.#revoked = new Set(crl.entries.map((e) => normalizeSerial(e.serialNumber)))
    this.#nextUpdate = next
    this.#number = number
    this.#digest = digest
    for (const fn of this.#listeners) fn()
  }

  /** Calls `fn` after each CRL installed (e.g. to re-check open connections). */
  onUpdate(fn: () => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** Loads the first CRL (throws when it cannot) and refreshes on the schedule. */
  async start(): Promise<void> {
    await this.refresh()
    const tick = () => {
      this.refresh()
        .catch((err: Error) => this.#onError(err))
        .finally(() => {
          if (this.#timer) this.#timer = setTimeout(tick, this.#refreshMs).unref()
        })
    }
    this.#timer = setTimeout(tick, this.#refreshMs).unref()
  }

  stop(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }
}

/**
 * Fetches `/pki/crl` and `/pki/ca` from the PKI's public endpoint over HTTPS, trusting only the
 * internal root. The documents are signed, so the endpoint itself needs no client certificate.
 */
export function httpCrlSource(
  baseUrl: string | URL,
  options: { rootPem: string; minVersion?: TlsMinVersion },
): CrlSource {
  const get = (path: string) =>
    new Promise<Buffer>((resolve, reject) => {
      const req = https.get(
        new URL(path, baseUrl),
        {
          ca: options.rootPem,
          minVersion: options.minVersion ?? 'TLSv1.2',
          agent: false,
          timeout: 10_000,
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume()
            reject(new Error(`GET ${path}: HTTP ${res.statusCode}`))
            return
          }
          const chunks: Buffer[] = []
          let size = 0
          res.on('data', (c: Buffer) => {
            size += c.length
            if (size > 8 * 1024 * 1024) req.destroy(new Error(`GET ${path}: response too large`))
            else chunks.push(c)
          })
          res.on('end', () => resolve(Buffer.concat(chunks)))
          res.on('error', reject)
        },
      )
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)))
      req.on('error', reject)
    })
  return async () => {
    const [crl, issuers] = await Promise.all([get('/pki/crl'), get('/pki/ca')])
    return { crl: new Uint8Array(crl), issuers: issuers.toString('utf8') }
  }
}
