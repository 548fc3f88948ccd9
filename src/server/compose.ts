import { mkdir } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { identityRoutes } from '../api/iam-routes.ts'
import { openApiRoute, registerOpenApi } from '../api/openapi.ts'
import { resourceRoutes } from '../api/resources.ts'
import { createAudit } from '../audit/component.ts'
import { createAuthz } from '../authz/component.ts'
import { systemClock } from '../core/clock.ts'
import { type Db, migrate, openDb, pendingMigrations } from '../core/db/index.ts'
import { createMetrics } from '../core/metrics.ts'
import { openObjectStore } from '../core/objects/index.ts'
import { createGateway } from '../gateway/component.ts'
import { guardApiRoutes } from '../gateway/pipeline.ts'
import { listProjects } from '../iam/admin/directory.ts'
import { createIam } from '../iam/component.ts'
import { isolationApiRoutes } from '../isolation/api.ts'
import { createIsolation } from '../isolation/component.ts'
import { createPki } from '../pki/component.ts'
import { loadKek } from '../pki/kek.ts'
import { mtlsPrincipal } from '../pki/peer-principal.ts'
import { ensureServerTls, keepServerTlsFresh } from '../pki/server-identity.ts'
import { buildApp } from './app.ts'
import { grantBootstrapRoles } from './bootstrap-roles.ts'
import type { Component, Runtime } from './component.ts'
import type { Config } from './config.ts'
import { LogEventSink } from './event-log-sink.ts'
import { allMigrations } from './migrations.ts'
import { createRedirectServer } from './redirect.ts'

/** A built, not yet listening control plane process. */
export interface ControlPlane {
  runtime: Runtime
  app: FastifyInstance
  components: Component[]
  caPath: string
  /** The plain-HTTP redirect listener's address, once listening (when configured). */
  redirectUrl: URL | undefined
  /** Opens the listeners and starts background work; resolves to the HTTPS URL. */
  listen(): Promise<URL>
  /** Graceful stop: refuse new requests, finish in-flight ones, stop components, close the db. */
  close(): Promise<void>
}

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '')
}

async function openDatabase(config: Config): Promise<Db> {
  if (config.core.databaseUrl)
    return openDb({ kind: 'postgres', url: config.core.databaseUrl.toString() })
  const dataDir = join(config.core.home, 'data')
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  return openDb({ kind: 'pglite', dataDir })
}

/** Builds every enabled component on one Fastify HTTPS server (`dflare up`). */
export async function createControlPlane(config: Config, log: Logger): Promise<ControlPlane> {
  await mkdir(config.core.home, { recursive: true, mode: 0o700 })
  const db = await openDatabase(config)
  const closeDbOnFailure = async (err: unknown) => {
    await db.close().catch(() => {})
    throw err
  }
  const setup = await (async () => {
    const applied = await migrate(db, allMigrations)
    if (applied.length)
      log.info(
        { migrations: applied.map((m) => `${m.module}/${m.version}_${m.name}`) },
        'migrations applied',
      )
    const objects = await openObjectStore(config.core.objectStore)
    const hosts = [
      ...new Set([
        hostOf(config.server.listen),
        hostOf(config.server.publicUrl),
        ...config.server.tlsHosts,
      ]),
    ]
    const kek = await loadKek(config.pki, config.core.home)
    const tls = await ensureServerTls({ dir: join(config.core.home, 'pki'), hosts, kek })
    return { objects, tls, kek, hosts }
  })().catch(closeDbOnFailure)

  const metrics = createMetrics()
  const runtime: Runtime = {
    config,
    db,
    objects: setup.objects,
    log,
    metrics,
    clock: systemClock,
    events: new LogEventSink(log),
    publicUrl: config.server.publicUrl,
  }

  const app = await buildApp({
    tls: { key: setup.tls.key, cert: setup.tls.cert, minVersion: config.server.tlsMinVersion },
    clientCa: setup.tls.chain,
    log,
    metrics,
    bodyLimit: config.server.bodyLimit,
    readiness: {
      async check() {
        await db.query('SELECT 1')
        const pending = await pendingMigrations(db, allMigrations)
        return pending.length ? `${pending.length} migrations pending` : undefined
      },
    },
  })

  // Audit first: every other component records its security events through it.
  const audit = await createAudit(runtime)
  runtime.events = audit.sink
  const authz = createAuthz(runtime, config.authz)
  const iam = await createIam(runtime, { entities: authz.service.writer })
  const pki = await createPki(runtime, { pdp: authz.service.pdp })
  const revocation = await pki.revocation()
  const isolation = createIsolation(runtime, {
    pdp: authz.service.pdp,
    realmExists: (tenant) => iam.service.realmExists(tenant),
  })

  // No /api/v1 route may exist outside the gateway; the OpenAPI document collects them all.
  guardApiRoutes(app)
  await registerOpenApi(app, runtime.publicUrl)
  openApiRoute(app)
  const gateway = createGateway(runtime, {
    authority: iam.service,
    pdp: authz.service.pdp,
    tenantExists: (tenant) => iam.service.realmExists(tenant),
    identifyPeer: mtlsPrincipal({ trustDomain: config.pki.trustDomain, revocation }),
    routes: [
      ...resourceRoutes({
        db,
        entities: authz.service.writer,
        projectExists: async (tenant, project) =>
          (await listProjects(iam.admin, tenant)).some((p) => p.id === project),
      }),
      ...identityRoutes({ admin: iam.admin, pdp: authz.service.pdp }),
      ...authz.apiRoutes,
      ...audit.apiRoutes,
      ...pki.apiRoutes,
      ...isolationApiRoutes(isolation.service),
    ],
  })
  const bootstrapRoles: Component = {
    name: 'bootstrap-roles',
    start: () => grantBootstrapRoles(db, iam.admin, runtime.events),
  }
  const components: Component[] = [
    audit.component,
    authz,
    iam.component,
    bootstrapRoles,
    pki,
    gateway,
  ]
  for (const c of components) await c.routes?.(app)

  const redirect = config.server.httpRedirectListen
    ? createRedirectServer(config.server.publicUrl)
    : undefined
  let started = false
  let stopTlsRenewal: (() => void) | undefined

  const plane: ControlPlane = {
    runtime,
    app,
    components,
    caPath: setup.tls.caPath,
    redirectUrl: undefined,
    async listen() {
      const { hostname, port } = config.server.listen
      await app.listen({ host: hostOf(config.server.listen), port: Number(port || 443) })
      const address = app.server.address() as AddressInfo
      // Listening on port 0 (tests): the default public URL learns the real port, in place, so
      // every component holding runtime.publicUrl sees it.
      if (port === '0' && runtime.publicUrl.port === '0')
        runtime.publicUrl.port = String(address.port)
      const r = config.server.httpRedirectListen
      if (redirect && r) {
        await new Promise<void>((resolve, reject) => {
          redirect.once('error', reject)
          redirect.listen(Number(r.port || 80), hostOf(r), resolve)
        })
        const ra = redirect.address() as AddressInfo
        plane.redirectUrl = new URL(`http://${r.hostname}:${ra.port}`)
      }
      for (const c of components) await c.start?.()
      // The listener certificate renews itself at two-thirds of its life, without a restart.
      stopTlsRenewal = keepServerTlsFresh(
        app.server as unknown as Parameters<typeof keepServerTlsFresh>[0],
        setup.tls,
        {
          dir: join(config.core.home, 'pki'),
          hosts: setup.hosts,
          kek: setup.kek,
          minVersion: config.server.tlsMinVersion,
          onError: (err) => log.error({ err }, 'server certificate renewal failed'),
        },
      )
      started = true
      return new URL(`https://${hostname}:${address.port}`)
    },
    async close() {
      stopTlsRenewal?.()
      redirect?.close()
      await app.close()
      if (started)
        for (const c of [...components].reverse())
          await c.stop?.().catch((err) => log.error({ err }, `stopping ${c.name} failed`))
      await runtime.objects.close?.()
      await db.close()
    },
  }
  return plane
}
