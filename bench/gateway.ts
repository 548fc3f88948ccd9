/**
 * Gateway overhead: the same TLS listener serves a bare Fastify handler and the same work behind
 * the full pipeline (JWT verification, PDP decision, durable audit write in the database), both
 * driven by autocannon on loopback in one run. Reports req/s, p50, p99 and the ratio.
 *
 *   npm run bench -- gateway --json [--seconds=10] [--connections=32]
 */
import autocannon from 'autocannon'
import { gatewayWorld } from '../test/gateway/world.ts'

function arg(args: string[], name: string, fallback: number) {
  const a = args.find((x) => x.startsWith(`--${name}=`))
  return a ? Number(a.split('=')[1]) : fallback
}

async function drive(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  connections: number,
) {
  const r = await autocannon({ url, headers, duration: seconds, connections, pipelining: 1 })
  return {
    requestsPerSecond: Math.round(r.requests.average),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
  }
}

export default async function (args: string[]) {
  const seconds = arg(args, 'seconds', 10)
  const connections = arg(args, 'connections', 32)
  const world = await gatewayWorld({
    limits: {
      perPrincipal: { max: 1e9, windowMs: 60_000 },
      perTenant: { max: 1e9, windowMs: 60_000 },
    },
  })
  try {
    const token = await world.as('acme', 'alice', { ttl: 900 })
    // The bare handler does what the API handler does (a read of the tenant's records) without
    // authentication, authorization or audit, on an identical TLS listener.
    const bare = await import('./gateway-bare.ts').then((m) => m.bareServer(world))
    try {
      await drive(`${bare.url}bare`, {}, 2, connections) // warm-up
      const bareResult = await drive(`${bare.url}bare`, {}, seconds, connections)
      const api = `${world.url.origin}/api/v1/tenants/acme/clusters?limit=10`
      await drive(api, { authorization: `Bearer ${token}` }, 2, connections)
      const full = await drive(api, { authorization: `Bearer ${token}` }, seconds, connections)
      const events = (
        await world.db.query<{ n: number }>('SELECT count(*)::int AS n FROM test_events')
      ).rows[0]!.n
      return {
        engine: world.db.engine,
        seconds,
        connections,
        bare: bareResult,
        pipeline: full,
        ratio: Math.round((full.requestsPerSecond / bareResult.requestsPerSecond) * 100) / 100,
        auditEventsWritten: events,
        target: { ratioAtLeast: 0.5, p99MsBelow: 10 },
      }
    } finally {
      await bare.close()
    }
  } finally {
    await world.close()
  }
}
