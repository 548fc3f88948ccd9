import { request } from 'node:https'

export interface Response {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  json(): any
}

/** A real HTTPS request trusting only the given CA. */
export function httpsRequest(
  url: URL | string,
  options: {
    method?: string
    headers?: Record<string, string>
    body?: string | Buffer
    ca: string
  },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, ca: options.ca, agent: false },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8')
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: () => JSON.parse(body),
          })
        })
      },
    )
    req.on('error', reject)
    if (options.body !== undefined) req.write(options.body)
    req.end()
  })
}
