/**
 * The server side of `npm run bench -- gateway`, run as a child process so that the load
 * generator never shares its event loop: the real control plane exactly as `dflare up` composes
 * it (IAM token verification with revocation checks, the PDP, held reads, the audit log's
 * sink), plus one bare route on the same Fastify instance (same TLS listener, same hooks) that
 * does the API handler's database read without authentication, authorization or audit, and two
 * reference routes beside it (the same read plus one durable row, and plus one audit event).
 *
 * Set-up goes through the public API only: the bootstrap platform client creates tenant `bench`,
 * a service account with the tenant-admin role and a few clusters; the service account's
 * client-credentials token then drives the pipeline.
 *
 * IPC: sends `{ ready: {...} }`; answers `{ cpu: true }` with the process CPU time so far and its
 * garbage collection pauses (count and total so far, the longest since the last such answer),
 * `{ stats: true }` with the audit log's size, `{ profileStart: true }` / `{ profileStop: FILE }`
 * by starting / writing a V8 CPU profile (FILE) and a sampling heap profile (FILE with
 * `.heapprofile` for `.cpuprofile`); exits on `{ stop: true }`.
 */
import { rmSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PerformanceObserver } from 'node:perf_hooks'
import pg from 'pg'
import pino from 'pino'
import { resourceRoutes } from '../../src/api/resources.ts'
import { createLogger } from '../../src/core/log.ts'
import { createControlPlane } from '../../src/server/compose.ts'
import { loadDflareConfig } from '../../src/server/config.ts'
import { allMigrations } from '../../src/server/migrations.ts'
import { createPostgresDatabase } from '../../test/support/db.ts'
import { httpsRequest } from '../../test/support/https.ts'
import { copyPgliteTemplate } from '../../test/support/pglite-template.ts'

interface Message {
  cpu?: boolean
  stats?: boolean
  stop?: boolean
  profileStart?: boolean
  /** Where to write the profile. */
  profileStop?: string
}

const TENANT = 'bench'
const CLUSTERS = 10

// Statements sent to PostgreSQL (each one a round trip), for statements per request.
let statements = 0
const originalQuery = pg.Client.prototype.query
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  statements++
  return (originalQuery as (...a: unknown[]) => unknown).apply(this, args)
} as typeof pg.Client.prototype.query

// Garbage collection pauses (each stops the event loop: one source of the latency tail).
const gc = { count: 0, ms: 0, maxMs: 0 }
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gc.count++
    gc.ms += e.duration
    gc.maxMs = Math.max(gc.maxMs, e.duration)
  }
}).observe({ entryTypes: ['gc'] })

// A fresh database on the PostgreSQL server named by DFLARE_TEST_DATABASE_URL (the parent
// passes DATABASE_URL through it), else embedded PGlite in the temporary home.
const home = await mkdtemp(join(tmpdir(), 'dflare-bench-gw-'))
// Also when start-up fails (a bad setting from the environment, say): nothing left behind.
process.on('exit', () => rmSync(home, { recursive: true, force: true }))
const database = process.env.DFLARE_TEST_DATABASE_URL ? await createPostgresDatabase() : undefined
if (!database) await copyPgliteTemplate(join(home, 'data'), allMigrations)
// Settings from the environment (DFLARE_AUDIT_INTEGRATION_DELAY=20ms, say) reach the plane, so
// that they can be compared; the bench's own home, listener, rate limits and database win.
const settings = Object.fromEntries(
  Object.entries(process.env).filter(
    ([k]) => k.startsWith('DFLARE_') && k !== 'DFLARE_TEST_DATABASE_URL',
  ),
)
const { config } = loadDflareConfig({
  env: {
    ...settings,
    DFLARE_HOME: home,
    DFLARE_LISTEN: 'https://127.0.0.1:0',
    // The bench measures the pipeline, not the rate limiter's refusals.
    DFLARE_RATE_LIMIT_PRINCIPAL: '1000000',
    DFLARE_RATE_LIMIT_TENANT: '10000000',
    ...(database ? { DATABASE_URL: database.url } : {}),
  },
  file: undefined,
})
// Production logging (one JSON line per request at info, written synchronously as to stdout),
// to where nobody reads it.
const log = createLogger({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }))
const plane = await createControlPlane(config, log)
const db = plane.runtime.db
// The bare route runs the API's own list handler, with the same schemas, on the same Fastify
// instance: only authentication, authorization and audit are missing.
const list = resourceRoutes({
  db,
  entities: { upsert: async () => {}, remove: async () => {} },
  projectExists: async () => false,
}).find((r) => r.method === 'GET' && r.url === '/tenants/:tenant/clusters')!
const bareSchema = {
  schema: { querystring: list.schema!.querystring, response: list.schema!.response },
}
const runList = (request: { query: unknown }) =>
  list.handler({ tenant: TENANT, query: request.query } as unknown as Parameters<
    typeof list.handler
  >[0])
plane.app.get('/bench/bare', bareSchema, async (request, reply) => {
  const result = await runList(request)
  return reply.code(result.status ?? 200).send(result.body)
})
// The bare route plus one durable audit event per request through the real sink by group commit
// (then the sequencer), and nothing else: how a read that the gateway could not hold is audited.
plane.app.get('/bench/audited', bareSchema, async (request, reply) => {
  const started = performance.now()
  const result = await runList(request)
  await plane.runtime.events.record({
    type: 'api.request',
    tenant: TENANT,
    actor: { kind: 'service', id: 'bench-client', realm: TENANT },
    action: 'cluster.list',
    resource: { type: 'Dflare::Tenant', id: TENANT },
    outcome: 'success',
    correlationId: request.id,
    sourceIp: request.ip,
    userAgent: request.headers['user-agent']?.slice(0, 256),
    details: {
      method: 'GET',
      route: '/api/v1/tenants/:tenant/clusters',
      status: 200,
      latencyMs: Math.round((performance.now() - started) * 100) / 100,
      policies: ['builtin/tenant-admin'],
    },
  })
  return reply.code(result.status ?? 200).send(result.body)
})
// The bare route plus the least a durable record of a request can cost: one row inserted by an
// autocommit statement (its own WAL flush), with no audit code at all. Where requests seldom
// overlap, so that flushes cannot be shared, the floor under `audited` and `pipeline`.
await db.query(
  'CREATE TABLE bench_durable (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, correlation_id text NOT NULL)',
)
plane.app.get('/bench/durable', bareSchema, async (request, reply) => {
  const result = await runList(request)
  await db.query('INSERT INTO bench_durable (correlation_id) VALUES ($1)', [request.id])
  return reply.code(result.status ?? 200).send(result.body)
})
const url = await plane.listen()
const server = {
  url,
  home,
  caPem: await readFile(plane.caPath, 'utf8'),
  async close() {
    await plane.close()
    await database?.drop()
    await rm(home, { recursive: true, force: true })
  },
}

const ca = server.caPem
async function call(method: string, path: string, token: string, body?: unknown) {
  const r = await httpsRequest(new URL(path, server.url), {
    method,
    ca,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body}`)
  return r.json()
}

async function clientCredentials(issuer: string, clientId: string, secret: string) {
  const discovery = await httpsRequest(`${issuer}/.well-known/openid-configuration`, { ca })
  const r = await httpsRequest(discovery.json().token_endpoint as string, {
    method: 'POST',
    ca,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials&scope=api',
  })
  if (r.status !== 200) throw new Error(`token: ${r.status} ${r.body}`)
  return r.json().access_token as string
}

const boot = JSON.parse(await readFile(join(server.home, 'bootstrap.json'), 'utf8'))
const admin = await clientCredentials(boot.issuer, boot.client_id, boot.client_secret)
await call('POST', '/api/v1/tenants', admin, { id: TENANT })
const account = await call('POST', `/api/v1/tenants/${TENANT}/service-accounts`, admin, {
  clientId: 'bench-client',
  name: 'bench',
})
await call('POST', `/api/v1/tenants/${TENANT}/role-bindings`, admin, {
  principal: { type: 'ServiceAccount', id: 'bench-client' },
  role: 'tenant-admin',
  scope: { type: 'Tenant' },
})
const issuer = boot.issuer.replace(/\/realms\/platform$/, `/realms/${TENANT}`)
const token = await clientCredentials(issuer, 'bench-client', account.clientSecret)
for (let i = 0; i < CLUSTERS; i++)
  await call('POST', `/api/v1/tenants/${TENANT}/clusters`, token, { name: `c${i}` })

/** Events of the bench tenant, integrated into its log or still queued (durable either way). */
async function auditEvents(): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT (SELECT count(*) FROM audit.events WHERE log = $1)
          + (SELECT count(*) FROM audit.queue WHERE log = $1) AS n`,
    [TENANT],
  )
  return rows[0]!.n
}

// CPU profile of chosen phases only (the parent asks around the pipeline runs).
const inspector = new Session()
inspector.connect()
await inspector.post('Profiler.enable')
await inspector.post('HeapProfiler.enable')

process.on('message', async (m: Message) => {
  if (m.cpu) {
    process.send!({ cpu: { ...process.cpuUsage(), statements, gc: { ...gc } } })
    gc.maxMs = 0
  }
  if (m.profileStart) {
    // Every allocation sampled (also those that die young): what a request allocates, and where.
    await inspector.post('HeapProfiler.startSampling', {
      samplingInterval: 16384,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    })
    await inspector.post('Profiler.start')
    process.send!({ profiling: true })
  }
  if (m.profileStop) {
    const { profile } = await inspector.post('Profiler.stop')
    await writeFile(m.profileStop, JSON.stringify(profile))
    const heap = await inspector.post('HeapProfiler.stopSampling')
    await writeFile(
      m.profileStop.replace(/\.cpuprofile$/, '.heapprofile'),
      JSON.stringify(heap.profile),
    )
    process.send!({ profiled: m.profileStop })
  }
  if (m.stats) process.send!({ stats: { auditEvents: await auditEvents() } })
  if (m.stop) {
    await server.close()
    process.exit(0)
  }
})
process.send!({
  ready: {
    engine: db.engine,
    origin: server.url.origin,
    ca,
    token,
    bare: `${server.url.origin}/bench/bare?limit=10`,
    durable: `${server.url.origin}/bench/durable?limit=10`,
    audited: `${server.url.origin}/bench/audited?limit=10`,
    pipeline: `${server.url.origin}/api/v1/tenants/${TENANT}/clusters?limit=10`,
  },
})
