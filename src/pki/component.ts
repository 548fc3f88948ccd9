import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Gauge } from 'prom-client'
import type { Pdp } from '../authz/contract.ts'
import type { AnyApiRoute } from '../gateway/route.ts'
import type { Component, Runtime } from '../server/component.ts'
import { pkiApiRoutes } from './api.ts'
import { openCa } from './ca-store.ts'
import { loadKek } from './kek.ts'
import { CrlChecker } from './revocation.ts'
import { pkiPublicRoutes } from './routes.ts'
import { PkiService } from './service.ts'
import { localSource, ServiceIdentity } from './svid.ts'

/**
 * The PKI component: opens (or creates) the CA under `$DFLARE_HOME/pki` with keys sealed under
 * the KEK, serves the distribution point and the operator API, checks expiry on a schedule
 * (metric + event), and hands in-process components their rotating identities and a CRL
 * checker.
 */
export interface PkiDeps {
  /** Authorizes issuance for callers that do not come through the gateway. */
  pdp?: Pdp
}

export interface Pki extends Component {
  service: PkiService
  /** `/api/v1/pki` and `/api/v1/tenants/{tenant}/pki`, for the gateway's registerApi. */
  apiRoutes: AnyApiRoute[]
  /** A rotating X.509-SVID for an in-process component (`spiffe://<td>/component/<name>`). */
  identity(component: string): Promise<ServiceIdentity>
  /** A CRL checker fed directly from this service, refreshed every `pki.crlRefresh`. */
  revocation(): Promise<CrlChecker>
}

export async function createPki(rt: Runtime, deps: PkiDeps = {}): Promise<Pki> {
  const settings = rt.config.pki
  const home = rt.config.core.home
  const kek = await loadKek(settings, home)
  if (kek.origin === 'generated')
    rt.log.warn(
      { path: join(home, 'kek') },
      'generated a key-encryption key for the CA keys; in production supply DFLARE_PKI_KEK or DFLARE_PKI_KEK_FILE from a secret store',
    )
  const dir = join(home, 'pki')
  const opened = await openCa({ dir, kek, now: rt.clock.now() })
  for (const notice of opened.notices) rt.log.warn(notice)

  const service = new PkiService({
    db: rt.db,
    ca: opened.ca,
    events: rt.events,
    clock: rt.clock,
    pdp: deps.pdp,
    policy: {
      trustDomain: settings.trustDomain,
      serviceCertTtl: settings.serviceCertTtl,
      crlValidity: settings.crlValidity,
      expiryWarning: settings.expiryWarning,
    },
  })

  const nearExpiry = new Gauge({
    name: 'dflare_pki_certificates_near_expiry',
    help: 'Valid certificates past their renewal point (or inside the warning window) with no successor',
    registers: [rt.metrics],
  })
  const soonest = new Gauge({
    name: 'dflare_pki_certificate_soonest_expiry_seconds',
    help: 'Seconds until the soonest near-expiry certificate expires (absent when none)',
    registers: [rt.metrics],
  })
  const intermediateExpiry = new Gauge({
    name: 'dflare_pki_intermediate_expiry_seconds',
    help: 'Seconds until the online intermediate CA certificate expires',
    registers: [rt.metrics],
  })

  const identities: ServiceIdentity[] = []
  const checkers: CrlChecker[] = []
  let timer: NodeJS.Timeout | undefined

  const checkExpiry = async () => {
    const near = await service.checkExpiry()
    const now = rt.clock.now().getTime()
    nearExpiry.set(near.length)
    if (near.length) soonest.set(Math.max(0, (near[0]!.notAfter.getTime() - now) / 1000))
    else soonest.reset()
    intermediateExpiry.set((service.ca.intermediate.notAfter.getTime() - now) / 1000)
  }

  return {
    name: 'pki',
    service,
    apiRoutes: pkiApiRoutes(service),
    async routes(app) {
      await pkiPublicRoutes(app, { service })
    },
    async start() {
      const serverCrt = join(dir, 'server.crt')
      if (existsSync(serverCrt))
        await service.recordExternal(await readFile(serverCrt, 'utf8'), 'server')
      await service.crl()
      await checkExpiry()
      const every = Math.min(settings.crlRefresh * 5, 300_000)
      const tick = () => {
        checkExpiry()
          .catch((err: Error) => rt.log.error({ err: err.message }, 'pki expiry check failed'))
          .finally(() => {
            if (timer) timer = setTimeout(tick, every).unref()
          })
      }
      timer = setTimeout(tick, every).unref()
    },
    async stop() {
      clearTimeout(timer)
      timer = undefined
      for (const i of identities) i.stop()
      for (const c of checkers) c.stop()
    },
    async identity(component) {
      const svid = await ServiceIdentity.create({
        source: localSource(service, component),
        log: rt.log.child({ component }),
      })
      identities.push(svid)
      return svid
    },
    async revocation() {
      const checker = new CrlChecker({
        rootPem: service.ca.rootPem,
        refreshMs: settings.crlRefresh,
        clock: rt.clock,
        source: async () => ({ crl: (await service.crl()).der, issuers: service.ca.chainPem }),
        onError: (err) => rt.log.error({ err: err.message }, 'CRL refresh failed'),
      })
      await checker.start()
      checkers.push(checker)
      return checker
    },
  }
}
