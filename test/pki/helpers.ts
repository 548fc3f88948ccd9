import { mkdtemp, rm } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import type { Decision, Pdp } from '../../src/authz/contract.ts'
import { type Clock, ManualClock, systemClock } from '../../src/core/clock.ts'
import type { Db } from '../../src/core/db/index.ts'
import type { EventSink } from '../../src/core/events.ts'
import { MemoryEventSink } from '../../src/core/events.ts'
import { guardApiRoutes, registerApi } from '../../src/gateway/pipeline.ts'
import { type Principal, userUid } from '../../src/gateway/principal.ts'
import { pkiApiRoutes } from '../../src/pki/api.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { Kek } from '../../src/pki/kek.ts'
import { generateEcKeyPair, privateKeyToPem } from '../../src/pki/keys.ts'
import { pkiMigrations } from '../../src/pki/migrations.ts'
import { pkiPublicRoutes } from '../../src/pki/routes.ts'
import { PkiService } from '../../src/pki/service.ts'
import { serverTlsOptions } from '../../src/pki/tls-policy.ts'
import { installProblemHandlers } from '../../src/server/problem-handler.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'

// One migrated database per test file (creating one is the slow part); emptied per fixture.
let shared: Promise<TestDatabase> | undefined
export function sharedDatabase(): Promise<TestDatabase> {
  shared ??= migratedDatabase([pkiMigrations])
  return shared
}
process.once('beforeExit', () => {
  void shared?.then((d) => d.close())
})

export async function tempDir(): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'dflare-pki-'))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

export function testKek(): Kek {
  return new Kek(Buffer.alloc(32, 7), 'env')
}

/** A PDP that allows exactly the listed (principal id, action, identity) triples. */
export class ListPdp implements Pdp {
  readonly calls: { principal: string; action: string; resource: string }[] = []
  readonly allowed: Set<string>
  constructor(allowed: Set<string>) {
    this.allowed = allowed
  }
  async decide(r: Parameters<Pdp['decide']>[0]): Promise<Decision> {
    this.calls.push({ principal: r.principal.id, action: r.action.id, resource: r.resource.id })
    const key = `${r.principal.id} ${r.action.id} ${r.resource.id}`
    return this.allowed.has(key)
      ? { decision: 'allow', determining: ['test'], errors: [], reason: 'listed' }
      : { decision: 'deny', determining: [], errors: [], reason: 'not listed' }
  }
}

export async function pkiFixture(
  options: { now?: Date; pdp?: Pdp; crlValidity?: number; clock?: Clock } = {},
) {
  const tmp = await tempDir()
  const manual = new ManualClock(options.now ?? new Date())
  const clock = options.clock ?? manual
  const kek = testKek()
  const opened = await openCa({ dir: join(tmp.dir, 'pki'), kek, now: clock.now() })
  const database = await sharedDatabase()
  await database.db.query('TRUNCATE pki.certificates, pki.crl_numbers')
  const events = new MemoryEventSink()
  const service = new PkiService({
    db: database.db,
    ca: opened.ca,
    events,
    clock,
    pdp: options.pdp,
    policy: {
      trustDomain: 'dflare.local',
      serviceCertTtl: 86_400_000,
      crlValidity: options.crlValidity ?? 3_600_000,
      expiryWarning: 7 * 86_400_000,
    },
  })
  return {
    dir: join(tmp.dir, 'pki'),
    home: tmp.dir,
    kek,
    clock: manual,
    events,
    service,
    db: database.db,
    ca: opened.ca,
    async close() {
      await tmp.cleanup()
    },
  }
}

/** The principal the test gateway attributes the next request to (stands in for a token). */
export const testPrincipal: { current: Principal | undefined } = { current: undefined }

export function userPrincipal(realm: string, subject: string): Principal {
  return {
    kind: 'user',
    uid: userUid(realm, subject),
    realm,
    subject,
    scope: { kind: 'org' },
    amr: ['pwd', 'mfa'],
    via: 'bearer',
  }
}

/**
 * The PKI's public endpoint on a real HTTPS listener and, with `gateway`, the operator API
 * behind the real gateway pipeline (its PDP and event sink; the principal from testPrincipal).
 */
export async function pkiHttpServer(
  service: PkiService,
  gateway?: { pdp: Pdp; events: EventSink; db: Db },
) {
  const keys = await generateEcKeyPair()
  const now = new Date()
  const issued = await service.ca.issue(
    { kind: 'server', hosts: ['127.0.0.1', 'localhost'] },
    keys.publicKey,
    { notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + 86_400_000) },
  )
  const app = Fastify({
    https: serverTlsOptions({ cert: issued.chainPem, key: await privateKeyToPem(keys.privateKey) }),
  })
  installProblemHandlers(app)
  await pkiPublicRoutes(app, { service })
  if (gateway) {
    guardApiRoutes(app)
    await registerApi(
      app,
      {
        db: gateway.db,
        pdp: gateway.pdp,
        events: gateway.events,
        clock: systemClock,
        tenantExists: async (t) => ['platform', 'acme', 'globex'].includes(t),
        limits: {
          perPrincipal: { max: 10_000, windowMs: 60_000 },
          perTenant: { max: 10_000, windowMs: 60_000 },
          unauthenticated: { max: 10_000, windowMs: 60_000 },
        },
        authority: {
          issuer: (realm) => `https://127.0.0.1/realms/${realm}`,
          verifyAccessToken: async () => {
            throw new Error('no tokens in this test')
          },
          maxAccessTokenTtl: async () => 300,
        },
        identifyPeer: () => testPrincipal.current,
      },
      pkiApiRoutes(service),
    )
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  return { app, url: `https://127.0.0.1:${port}`, close: () => app.close() }
}
