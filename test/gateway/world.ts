import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { openApiRoute, registerOpenApi } from '../../src/api/openapi.ts'
import { resourceRoutes } from '../../src/api/resources.ts'
import type { EntityRecord, Pdp } from '../../src/authz/contract.ts'
import type { Role } from '../../src/authz/schema.ts'
import { type AuthzService, createAuthzService } from '../../src/authz/service.ts'
import { addRoleBinding } from '../../src/authz/writer.ts'
import { systemClock } from '../../src/core/clock.ts'
import type { Db } from '../../src/core/db/index.ts'
import { type EventSink, markAuditFailure, type SecurityEvent } from '../../src/core/events.ts'
import { createLogger } from '../../src/core/log.ts'
import { createMetrics } from '../../src/core/metrics.ts'
import { guardApiRoutes, registerApi } from '../../src/gateway/pipeline.ts'
import type { AnyApiRoute } from '../../src/gateway/route.ts'
import { ensureServerTls } from '../../src/pki/server-identity.ts'
import { buildApp } from '../../src/server/app.ts'
import { allMigrations } from '../../src/server/migrations.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'
import { httpsRequest, type Response } from '../support/https.ts'
import { TestAuthority } from '../support/token-authority.ts'

const D = 'Dflare'
const uid = (type: string, id: string) => ({ type: `${D}::${type}`, id })
const entity = (
  type: string,
  id: string,
  tenant: string,
  parents: [string, string][] = [],
): EntityRecord => ({
  uid: uid(type, id),
  tenant,
  attrs: {},
  parents: parents.map(([t, i]) => uid(t, i)),
})

/** Audit events written to a table in the caller's transaction, like the real audit log. */
export class TableEventSink implements EventSink {
  readonly db: Db
  failing = false
  constructor(db: Db) {
    this.db = db
  }
  async record(event: SecurityEvent, tx?: Parameters<EventSink['record']>[1]) {
    if (this.failing) throw new Error('audit store down')
    const insert = 'INSERT INTO test_events (event) VALUES ($1)'
    // Like the audit log's sink: in a transaction the statement is issued, and the commit waits.
    if (tx) markAuditFailure(tx.query(insert, [JSON.stringify(event)]))
    else await this.db.query(insert, [JSON.stringify(event)])
  }
  async all(): Promise<SecurityEvent[]> {
    return (
      await this.db.query<{ event: SecurityEvent }>('SELECT event FROM test_events ORDER BY n')
    ).rows.map((r) => r.event)
  }
}

/** Principals of the test world: `realm/subject` → role at a scope. */
export const PEOPLE: { realm: string; sub: string; role?: Role; scope?: [string, string] }[] = [
  { realm: 'platform', sub: 'root', role: 'platform-admin', scope: ['Tenant', 'platform'] },
  { realm: 'platform', sub: 'officer', role: 'security-officer', scope: ['Tenant', 'platform'] },
  { realm: 'acme', sub: 'alice', role: 'tenant-admin', scope: ['Tenant', 'acme'] },
  { realm: 'acme', sub: 'pat', role: 'project-admin', scope: ['Project', 'acme/p1'] },
  { realm: 'acme', sub: 'vic', role: 'viewer', scope: ['Tenant', 'acme'] },
  { realm: 'acme', sub: 'nobody' },
  { realm: 'globex', sub: 'bob', role: 'tenant-admin', scope: ['Tenant', 'globex'] },
]

export interface GatewayWorld {
  app: FastifyInstance
  url: URL
  ca: string
  tls: { key: string; cert: string }
  db: Db
  authz: AuthzService
  authority: TestAuthority
  events: TableEventSink
  logs: Record<string, unknown>[]
  pdp: { failing: boolean }
  call(
    method: string,
    path: string,
    opts?: { token?: string; body?: unknown; headers?: Record<string, string> },
  ): Promise<Response>
  as(realm: string, sub: string, extra?: Parameters<TestAuthority['token']>[1]): Promise<string>
  bind(realm: string, sub: string, role: Role, scope: [string, string]): Promise<void>
  close(): Promise<void>
}

/** More routes and, optionally, the real event sink (e.g. the audit log) for a world. */
export interface WorldExtension {
  routes: AnyApiRoute[]
  events?: EventSink
  /** Routes outside the API (e.g. public verifier keys), mounted like a component's. */
  mount?(app: FastifyInstance): Promise<void> | void
  close?(): Promise<void>
}

export async function gatewayWorld(
  options: {
    routes?: AnyApiRoute[]
    limits?: Partial<Parameters<typeof registerApi>[1]['limits']>
    extend?: (ctx: { db: Db; authz: AuthzService }) => Promise<WorldExtension>
  } = {},
): Promise<GatewayWorld> {
  const database: TestDatabase = await migratedDatabase(allMigrations.slice(1))
  const db = database.db
  await db.query('CREATE TABLE test_events (n bigserial PRIMARY KEY, event jsonb NOT NULL)')
  const authz = createAuthzService({ db, clock: systemClock })
  await authz.start()
  const events = new TableEventSink(db)
  const authority = new TestAuthority()

  const bind = (realm: string, sub: string, role: Role, scope: [string, string]) =>
    db.transaction(async (tx) => {
      await authz.writer.upsert(tx, [entity('User', `${realm}/${sub}`, realm)])
      await addRoleBinding(tx, {
        tenant: realm,
        principal: { type: 'User', id: `${realm}/${sub}` },
        role,
        scope: { type: scope[0] as 'Tenant', id: scope[1] },
      })
    })
  await db.transaction(async (tx) => {
    await authz.writer.upsert(tx, [
      entity('Tenant', 'platform', 'platform'),
      entity('Tenant', 'acme', 'acme'),
      entity('Tenant', 'globex', 'globex'),
      entity('Domain', 'acme/d1', 'acme', [['Tenant', 'acme']]),
      entity('Project', 'acme/p1', 'acme', [['Domain', 'acme/d1']]),
      entity('Project', 'acme/p2', 'acme', [['Domain', 'acme/d1']]),
      entity('Domain', 'globex/g1', 'globex', [['Tenant', 'globex']]),
      entity('Project', 'globex/q1', 'globex', [['Domain', 'globex/g1']]),
      ...PEOPLE.map((p) => entity('User', `${p.realm}/${p.sub}`, p.realm)),
    ])
  })
  for (const p of PEOPLE) if (p.role && p.scope) await bind(p.realm, p.sub, p.role, p.scope)

  const home = await mkdtemp(join(tmpdir(), 'dflare-gw-'))
  const tls = await ensureServerTls({ dir: home, hosts: ['127.0.0.1'] })
  const logs: Record<string, unknown>[] = []
  const log = createLogger(
    { level: 'info' },
    new Writable({
      write(chunk, _e, cb) {
        for (const l of String(chunk).split('\n')) if (l.trim()) logs.push(JSON.parse(l))
        cb()
      },
    }),
  )
  const app = await buildApp({
    tls: { key: tls.key, cert: tls.cert, minVersion: 'TLSv1.2' },
    log,
    metrics: createMetrics(),
    bodyLimit: 65536,
    readiness: { check: async () => undefined },
  })
  guardApiRoutes(app)
  await registerOpenApi(app, new URL('https://127.0.0.1'))
  openApiRoute(app)
  const pdpState = { failing: false }
  const pdp: Pdp = {
    decide: (r) => (pdpState.failing ? Promise.reject(new Error('pdp down')) : authz.pdp.decide(r)),
  }
  const projects = new Set(['acme/p1', 'acme/p2', 'globex/q1'])
  const extension = await options.extend?.({ db, authz })
  await registerApi(
    app,
    {
      db,
      authority,
      pdp,
      events: extension?.events ?? events,
      clock: systemClock,
      tenantExists: async (t) => ['platform', 'acme', 'globex'].includes(t),
      limits: {
        perPrincipal: { max: 10_000, windowMs: 60_000 },
        perTenant: { max: 100_000, windowMs: 60_000 },
        unauthenticated: { max: 10_000, windowMs: 60_000 },
        ...options.limits,
      },
    },
    [
      ...(options.routes ??
        resourceRoutes({
          db,
          entities: authz.writer,
          projectExists: async (t, p) => projects.has(`${t}/${p}`),
        })),
      ...(extension?.routes ?? []),
    ],
  )
  await extension?.mount?.(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = new URL(`https://127.0.0.1:${(app.server.address() as { port: number }).port}`)
  return {
    app,
    url,
    ca: tls.ca,
    tls: { key: tls.key, cert: tls.cert },
    db,
    authz,
    authority,
    events,
    logs,
    pdp: pdpState,
    call: (method, path, opts = {}) =>
      httpsRequest(new URL(path, url), {
        method,
        ca: tls.ca,
        headers: {
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...opts.headers,
        },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      }),
    as: (realm, sub, extra) => authority.token(realm, { sub, ...extra }),
    bind,
    async close() {
      await app.close()
      await extension?.close?.()
      await authz.stop()
      await database.close()
      await rm(home, { recursive: true, force: true })
    },
  }
}
