import Fastify from 'fastify'
import { readInTenant } from '../src/api/tenant-scope.ts'
import { serverTlsOptions } from '../src/pki/tls-policy.ts'
import type { GatewayWorld } from '../test/gateway/world.ts'

/** The bare peer: same TLS policy and certificate, same database read, no pipeline. */
export async function bareServer(world: GatewayWorld) {
  const app = Fastify({ https: serverTlsOptions({ key: world.tls.key, cert: world.tls.cert }) })
  app.get('/bare', async () => {
    const rows = await readInTenant(
      world.db,
      'acme',
      async (q) =>
        (
          await q.query(
            "SELECT * FROM api.resources WHERE tenant = 'acme' AND kind = 'Cluster' ORDER BY id LIMIT 11",
          )
        ).rows,
    )
    return { items: rows }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as { port: number }).port
  return { url: `https://127.0.0.1:${port}/`, close: () => app.close() }
}
