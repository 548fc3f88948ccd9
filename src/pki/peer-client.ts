import https from 'node:https'
import { outboundHeaders } from '../core/correlation.ts'
import { componentId } from './spiffe.ts'
import { type IdentitySource, MtlsAgent, type TlsMinVersion } from './tls-policy.ts'

/**
 * A JSON client for one component's internal endpoints on another process, over mutual TLS:
 * it presents the calling component's rotating certificate (MtlsAgent), names the callee in the
 * TLS server name, and accepts only a server certificate carrying the callee's SPIFFE id.
 * Pooled connections are kept alive; new connections use the current certificate.
 */
export interface PeerClientOptions {
  /** The component called, e.g. `authz`. */
  peer: string
  /** Its internal listener, https://HOST:PORT. */
  url: URL
  /** The calling component's service identity. */
  identity: IdentitySource
  trustDomain: string
  /** TLS server name selecting the callee on a shared listener. */
  serverName: string
  minVersion?: TlsMinVersion
  /** Per-request timeout (connect to last byte). */
  timeoutMs?: number
  /** Largest accepted response body. */
  maxResponseBytes?: number
}

export interface PeerResponse {
  status: number
  body: unknown
}

export class PeerUnavailable extends Error {
  override name = 'PeerUnavailable'
}

export class PeerClient {
  readonly peer: string
  readonly url: URL
  readonly #agent: MtlsAgent
  readonly #o: PeerClientOptions

  constructor(options: PeerClientOptions) {
    this.peer = options.peer
    this.url = options.url
    this.#o = options
    this.#agent = new MtlsAgent(options.identity, {
      expectedServer: [componentId(options.trustDomain, options.peer)],
      minVersion: options.minVersion,
      agent: { keepAlive: true, maxSockets: 64, maxFreeSockets: 16, timeout: 60_000 },
    })
  }

  /**
   * One request. Resolves with any HTTP status (callers decide what a status means); rejects
   * with PeerUnavailable when no well-formed response arrived in time.
   */
  async request(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    options: { idempotent?: boolean } = {},
  ): Promise<PeerResponse> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    try {
      return await this.#once(method, path, payload)
    } catch (err) {
      // A kept-alive connection the server closed just as we reused it: nothing was processed
      // when the call is idempotent, so it is safe to send it once more on a new connection.
      if (options.idempotent && (err as { reused?: boolean }).reused)
        return this.#once(method, path, payload)
      throw err
    }
  }

  #once(method: string, path: string, payload: Buffer | undefined): Promise<PeerResponse> {
    const limit = this.#o.maxResponseBytes ?? 4 * 1024 * 1024
    return new Promise((resolve, reject) => {
      let reused = false
      const fail = (why: string, early = false) =>
        reject(
          Object.assign(new PeerUnavailable(`${this.peer} at ${this.url.host}: ${why}`), {
            reused: reused && early,
          }),
        )
      let responded = false
      const req = https.request(
        new URL(path, this.url),
        {
          method,
          agent: this.#agent,
          servername: this.#o.serverName,
          timeout: this.#o.timeoutMs ?? 10_000,
          headers: {
            ...outboundHeaders(),
            accept: 'application/json',
            ...(payload
              ? { 'content-type': 'application/json', 'content-length': payload.length }
              : {}),
          },
        },
        (res) => {
          responded = true
          const chunks: Buffer[] = []
          let size = 0
          res.on('data', (c: Buffer) => {
            size += c.length
            if (size > limit) req.destroy(new Error('response too large'))
            else chunks.push(c)
          })
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let parsed: unknown
            try {
              parsed = text ? JSON.parse(text) : undefined
            } catch {
              fail(`HTTP ${res.statusCode}: response is not JSON`)
              return
            }
            resolve({ status: res.statusCode ?? 0, body: parsed })
          })
          res.on('error', (err) => fail(err.message))
        },
      )
      req.on('timeout', () => req.destroy(new Error('timed out')))
      req.on('error', (err) => {
        const code = (err as { code?: string }).code
        reused = req.reusedSocket
        fail(err.message, !responded && (code === 'ECONNRESET' || code === 'EPIPE'))
      })
      req.end(payload)
    })
  }

  close(): void {
    this.#agent.destroy()
  }
}
