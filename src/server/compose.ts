import { mkdir } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type tls from 'node:tls'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { identityRoutes } from '../api/iam-routes.ts'
import { openApiRoute, registerOpenApi } from '../api/openapi.ts'
import { resourceRoutes } from '../api/resources.ts'
import { createAudit } from '../audit/component.ts'
import { auditInternalApi } from '../audit/internal.ts'
import { createAuthz } from '../authz/component.ts'
import { authzInternalApi } from '../authz/internal.ts'
import { StoreWriter } from '../authz/writer.ts'
import { systemClock } from '../core/clock.ts'
import { ConfigError } from '../core/config/index.ts'
import { DataDirLocked, type Db, migrate, openDb, pendingMigrations } from '../core/db/index.ts'
import { createMetrics } from '../core/metrics.ts'
import { openObjectStore } from '../core/objects/index.ts'
import { createGateway } from '../gateway/component.ts'
import { guardApiRoutes } from '../gateway/pipeline.ts'
import { createIam } from '../iam/component.ts'
import { iamInternalApi } from '../iam/internal.ts'
import { isolationApiRoutes } from '../isolation/api.ts'
import { createIsolation } from '../isolation/component.ts'
import { createPki } from '../pki/component.ts'
import { loadKek } from '../pki/kek.ts'
import { mtlsPrincipal } from '../pki/peer-principal.ts'
import { CrlChecker, httpCrlSource } from '../pki/revocation.ts'
import { fileServiceIdentity, type ServiceIdentity } from '../pki/svid.ts'
import { buildApp } from './app.ts'
import { grantBootstrapRoles } from './bootstrap-roles.ts'
import type { Component, InternalApi, Runtime } from './component.ts'
import type { Config } from './config.ts'
import { LogEventSink } from './event-log-sink.ts'
import { tuneGarbageCollection } from './gc-tuning.ts'
import { createInternalListener, type InternalListener } from './internal.ts'
import { allMigrations } from './migrations.ts'
import { Peers } from './peers.ts'
import { publicTls } from './public-tls.ts'
import { createRedirectServer } from './redirect.ts'
import { COMPONENTS, type ComponentName, resolveTopology } from './topology.ts'

/** A built, not yet listening control plane process. */
export interface ControlPlane {
  runtime: Runtime
  app: FastifyInstance
  components: Component[]
  /** The components this process runs. */
  local: readonly ComponentName[]
  caPath: string
  /** The plain-HTTP redirect listener's address, once listening (when configured). */
  redirectUrl: URL | undefined
  /** The internal mTLS listener's address, once listening (`dflare serve` with audit, authz or iam). */
  internalUrl: URL | undefined
  /** Opens the listeners and starts background work; resolves to the HTTPS URL. */
  listen(): Promise<URL>
  /** Renews every service certificate of this process now and refreshes the CRL (SIGHUP). */
  rotateIdentities(): Promise<number>
  /** Graceful stop: refuse new requests, finish in-flight ones, stop components, close the db. */
  close(): Promise<void>
}

export interface PlaneOptions {
  /** The components to run; every one by default (`dflare up`). */
  components?: readonly ComponentName[]
  /** Serve audit, authz and iam to other processes on the internal listener (`dflare serve`). */
  internal?: boolean
}

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '')
}

async function openDatabase(config: Config): Promise<Db> {
  if (config.core.databaseUrl)
    return openDb({ kind: 'postgres', url: config.core.databaseUrl.toString() })
  const dataDir = join(config.core.home, 'data')
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  try {
    // The embedded database stays locked to this process until it is closed.
    return await openDb({ kind: 'pglite', dataDir })
  } catch (err) {
    if (err instanceof DataDirLocked) throw new ConfigError(`DFLARE_HOME (home): ${err.message}`)
    throw err
  }
}

/**
 * Builds the enabled components of one process on one Fastify HTTPS server. `dflare up` runs
 * every component in one process (the default); `dflare serve --components …` runs a subset:
 * a dependency running elsewhere is reached over mutual TLS through a small client with the
 * same interface as the in-process implementation (Pdp, TokenAuthority, EventSink, …).
 */
export async function createControlPlane(
  config: Config,
  log: Logger,
  options: PlaneOptions = {},
): Promise<ControlPlane> {
  tuneGarbageCollection()
  const enabled = options.components ?? COMPONENTS
  const topology = resolveTopology(config, enabled, { internal: options.internal === true })
  const has = (c: ComponentName) => topology.local.has(c)
  for (const env of topology.ignoredPeers)
    log.warn({ setting: env }, 'peer setting ignored: that component runs in this process')
  const trustDomain = config.pki.trustDomain
  const minVersion = config.server.tlsMinVersion

  await mkdir(config.core.home, { recursive: true, mode: 0o700 })
  const db = await openDatabase(config)
  /** Set once every component has started (listen()): /readyz answers 503 until then. */
  let started = false
  const cleanups: (() => unknown)[] = []
  const failed = async (err: unknown): Promise<never> => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => {})
    await db.close().catch(() => {})
    throw err
  }

  try {
    const applied = await migrate(db, allMigrations)
    if (applied.length)
      log.info(
        { migrations: applied.map((m) => `${m.module}/${m.version}_${m.name}`) },
        'migrations applied',
      )
    const objects = await openObjectStore(config.core.objectStore)
    cleanups.push(() => objects.close?.())
    const metrics = createMetrics()
    const runtime: Runtime = {
      config,
      db,
      objects,
      log,
      metrics,
      clock: systemClock,
      events: new LogEventSink(log),
      publicUrl: config.server.publicUrl,
    }

    // Service identities. Without the PKI in this process they start from the files the
    // operator issued and renew against the PKI host; the CRL comes from there too.
    const svids = new Map<ComponentName, ServiceIdentity>()
    const pkiUrl = topology.pkiUrl
    let remoteCrl: CrlChecker | undefined
    if (pkiUrl) {
      for (const c of topology.identities) {
        const svid = await fileServiceIdentity({
          dir: join(config.server.identityDir, c),
          pkiUrl,
          minVersion,
          log: log.child({ component: c }),
        })
        svids.set(c, svid)
        cleanups.push(() => svid.stop())
      }
      const rootPem = svids.values().next().value!.current().ca
      remoteCrl = new CrlChecker({
        rootPem,
        source: httpCrlSource(pkiUrl, { rootPem, minVersion }),
        refreshMs: config.pki.crlRefresh,
        onError: (err) => log.error({ err: err.message }, 'CRL refresh failed'),
      })
      cleanups.push(() => remoteCrl?.stop())
    }

    // The public listener: the CA's server certificate on the PKI host, else the certificate of
    // this process's front component.
    const hosts = [
      ...new Set([
        hostOf(config.server.listen),
        hostOf(config.server.publicUrl),
        ...config.server.tlsHosts,
      ]),
    ]
    const kek = has('pki') ? await loadKek(config.pki, config.core.home) : undefined
    const listenerTls = await publicTls({
      home: config.core.home,
      identityDir: config.server.identityDir,
      hosts,
      kek,
      identities: svids,
      minVersion,
      log,
    })

    const peers = new Peers({
      db,
      log,
      remote: topology.remote,
      identities: svids,
      trustDomain,
      minVersion,
    })
    cleanups.push(() => peers.close())
    const app = await buildApp({
      tls: { key: listenerTls.key, cert: listenerTls.cert, minVersion },
      clientCa: listenerTls.clientCa,
      log,
      metrics,
      bodyLimit: config.server.bodyLimit,
      readiness: {
        async check() {
          // The listener opens before the components start (the IAM realms, the first keys): until
          // every one has, requests would find them missing.
          if (!started) return 'starting'
          await db.query('SELECT 1')
          const pending = await pendingMigrations(db, allMigrations)
          if (pending.length) return `${pending.length} migrations pending`
          if (remoteCrl && remoteCrl.number < 0) return `no CRL from the PKI at ${pkiUrl?.host} yet`
          return peers.notReady()
        },
      },
    })
    cleanups.push(() => app.close())

    // Audit first: every other component records its security events through it.
    const audit = has('audit') ? await createAudit(runtime) : undefined
    if (audit) runtime.events = peers.audit = audit.sink
    const rtFor = (c: ComponentName): Runtime => ({ ...runtime, events: peers.events(c) })

    const authz = has('authz') ? createAuthz(runtime, config.authz) : undefined
    peers.authz = authz?.service.pdp
    const entities = authz?.service.writer ?? new StoreWriter()
    const pki = has('pki') ? await createPki(rtFor('pki'), { pdp: authz?.service.pdp }) : undefined
    if (pki) {
      cleanups.push(() => pki.stop?.())
      for (const c of topology.identities) svids.set(c, await pki.identity(c))
    }
    const revocation = remoteCrl ?? (await pki!.revocation())

    const iam = has('iam') ? await createIam(rtFor('iam'), { entities }) : undefined
    peers.iam = iam?.service

    const isolation = has('isolation')
      ? (() => {
          const identity = peers.identity('isolation')
          return createIsolation(rtFor('isolation'), {
            pdp: peers.pdp('isolation'),
            realmExists: (tenant) => identity.realmExists(tenant),
          })
        })()
      : undefined

    // No /api/v1 route may exist outside the gateway; the OpenAPI document collects them all.
    guardApiRoutes(app)
    let gateway: Component | undefined
    if (has('gateway')) {
      await registerOpenApi(app, runtime.publicUrl)
      openApiRoute(app)
      const identity = peers.identity('gateway')
      const pdp = peers.pdp('gateway')
      // The gateway fronts the resource API and the API of every component in this process.
      gateway = createGateway(rtFor('gateway'), {
        authority: identity,
        pdp,
        tenantExists: (tenant) => identity.realmExists(tenant),
        identifyPeer: mtlsPrincipal({ trustDomain, revocation }),
        routes: [
          ...resourceRoutes({
            db,
            entities,
            projectExists: (tenant, project) => identity.projectExists(tenant, project),
          }),
          ...(iam ? identityRoutes({ admin: iam.admin, pdp }) : []),
          ...(authz?.apiRoutes ?? []),
          ...(audit?.apiRoutes ?? []),
          ...(pki?.apiRoutes ?? []),
          ...(isolation ? isolationApiRoutes(isolation.service) : []),
        ],
      })
    }
    const bootstrapRoles: Component | undefined = iam && {
      name: 'bootstrap-roles',
      start: () => grantBootstrapRoles(db, iam.admin, peers.events('iam')),
    }
    const components = [
      audit?.component,
      authz,
      iam?.component,
      bootstrapRoles,
      pki,
      gateway,
    ].filter((c): c is Component => c !== undefined)
    for (const c of components) await c.routes?.(app)

    // Every component's events reach the remote audit log with that component's identity.
    peers.connectEvents()

    let internal: InternalListener | undefined
    if (topology.internal) {
      const apis: InternalApi[] = []
      if (audit) apis.push(auditInternalApi(audit.sink))
      if (authz) apis.push(authzInternalApi(authz.service.pdp))
      if (iam) apis.push(iamInternalApi({ service: iam.service, db }))
      internal = await createInternalListener({
        apis,
        identities: svids,
        revocation,
        trustDomain,
        minVersion,
        bodyLimit: config.server.bodyLimit,
        log,
        metrics,
      })
      const listener = internal
      cleanups.push(() => listener.close())
    }

    const redirect = config.server.httpRedirectListen
      ? createRedirectServer(config.server.publicUrl)
      : undefined
    const stops: (() => void)[] = []

    const plane: ControlPlane = {
      runtime,
      app,
      components,
      local: enabled,
      caPath: listenerTls.caPath,
      redirectUrl: undefined,
      internalUrl: undefined,
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
        if (remoteCrl) stops.push(startWithRetry(remoteCrl, config.pki.crlRefresh, log))
        stops.push(peers.start())
        for (const c of components) await c.start?.()
        if (internal) plane.internalUrl = await internal.listen(config.server.internalListen)
        // The listener certificate renews itself at two-thirds of its life, without a restart.
        stops.push(listenerTls.keepFresh(app.server as unknown as tls.Server))
        started = true
        return new URL(`https://${hostname}:${address.port}`)
      },
      async rotateIdentities() {
        await Promise.all([...svids.values()].map((s) => s.rotate()))
        await revocation
          .refresh()
          .catch((err: Error) => log.error({ err: err.message }, 'CRL refresh failed'))
        return svids.size
      },
      async close() {
        for (const stop of stops.splice(0)) stop()
        redirect?.close()
        await internal?.close()
        await app.close()
        if (started)
          for (const c of [...components].reverse())
            await c.stop?.().catch((err) => log.error({ err }, `stopping ${c.name} failed`))
        for (const svid of svids.values()) svid.stop()
        remoteCrl?.stop()
        peers.close()
        await runtime.objects.close?.()
        await db.close()
      },
    }
    return plane
  } catch (err) {
    return failed(err)
  }
}

/** Loads the first CRL, retrying until the PKI answers (peers are refused until then). */
function startWithRetry(crl: CrlChecker, refreshMs: number, log: Logger): () => void {
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const attempt = () => {
    crl.start().catch((err: Error) => {
      if (stopped) return
      log.warn({ err: err.message }, 'no CRL from the PKI yet; retrying')
      timer = setTimeout(attempt, Math.min(refreshMs, 5_000)).unref()
    })
  }
  attempt()
  return () => {
    stopped = true
    clearTimeout(timer)
    crl.stop()
  }
}
