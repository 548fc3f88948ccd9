import { createServer, type Server } from 'node:http'

/**
 * Plain-HTTP listener that only redirects (308) to the HTTPS public URL. The target host is
 * always the configured one, never the request's Host header (no open redirect).
 */
export function createRedirectServer(publicUrl: URL): Server {
  return createServer((req, res) => {
    const path = `/${(req.url ?? '/').replace(/^[/\\]+/, '')}`
    res.writeHead(308, {
      location: `${publicUrl.origin}${path}`,
      'content-length': '0',
      'cache-control': 'no-store',
      connection: 'close',
    })
    res.end()
  })
}
