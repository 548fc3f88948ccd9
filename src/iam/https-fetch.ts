import { Agent, request } from 'node:https'

/**
 * A Fetch-compatible function that trusts the given CA certificates (PEM) instead of the system
 * store, for talking to a Dflare server under its internal CA (CLI, federation, tests).
 * Redirects are not followed (OAuth clients must see them).
 */
export type CaFetch = ((input: string | URL | Request, init?: RequestInit) => Promise<Response>) & {
  /** Closes pooled connections. */
  close(): void
}

export function caFetch(
  ca: string | string[],
  opts: { maxBodyBytes?: number; clientCert?: { cert: string; key: string } } = {},
): CaFetch {
  const limit = opts.maxBodyBytes ?? 1_048_576
  // Idle pooled sockets are dropped before a server's usual 5 s keep-alive timeout.
  const agent = new Agent({
    keepAlive: true,
    timeout: 4_000,
    ca,
    minVersion: 'TLSv1.2',
    ...opts.clientCert,
  })
  const fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const req = input instanceof Request ? input : new Request(input, init)
    const url = new URL(req.url)
    if (url.protocol !== 'https:') throw new TypeError('only https is allowed')
    const body = req.body ? Buffer.from(await req.arrayBuffer()) : undefined
    const headers: Record<string, string> = {}
    req.headers.forEach((v, k) => {
      headers[k] = v
    })
    if (body) headers['content-length'] = String(body.length)
    const send = (): Promise<Response> =>
      new Promise<Response>((resolve, reject) => {
        const r = request(
          url,
          { method: req.method, headers, agent, signal: req.signal },
          (res) => {
            const chunks: Buffer[] = []
            let size = 0
            res.on('data', (c: Buffer) => {
              size += c.length
              if (size > limit) {
                res.destroy(new Error('response too large'))
                return
              }
              chunks.push(c)
            })
            res.on('error', reject)
            res.on('end', () => {
              const h = new Headers()
              for (const [k, v] of Object.entries(res.headers)) {
                if (Array.isArray(v)) for (const x of v) h.append(k, x)
                else if (v !== undefined) h.set(k, v)
              }
              const status = res.statusCode ?? 500
              const noBody = status === 204 || status === 304 || req.method === 'HEAD'
              resolve(new Response(noBody ? null : Buffer.concat(chunks), { status, headers: h }))
            })
          },
        )
        r.on('error', (err: NodeJS.ErrnoException) => {
          // A pooled socket the server had just closed: the request never reached it; resend once
          // on a fresh connection (Node's documented pattern for reusedSocket).
          if (r.reusedSocket && err.code === 'ECONNRESET' && !retried) {
            retried = true
            send().then(resolve, reject)
          } else reject(err)
        })
        r.end(body)
      })
    let retried = false
    return send()
  }
  return Object.assign(fetch, { close: () => agent.destroy() })
}
