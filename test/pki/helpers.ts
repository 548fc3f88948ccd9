import { mkdtemp, rm } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyRequest } from 'fastify'
import type { Decision, Pdp } from '../../src/authz/contract.ts'
import { type Clock, ManualClock } from '../../src/core/clock.ts'
import { Problem } from '../../src/core/errors.ts'
import { MemoryEventSink } from '../../src/core/events.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { Kek } from '../../src/pki/kek.ts'
import { generateEcKeyPair, privateKeyToPem } from '../../src/pki/keys.ts'
import { pkiMigrations } from '../../src/pki/migrations.ts'
import { pkiPublicRoutes, pkiRoutes } from '../../src/pki/routes.ts'
import { type Caller, PkiService } from '../../src/pki/service.ts'
import { serverTlsOptions } from '../../src/pki/tls-policy.ts'
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

/** The PKI's public endpoint (and optionally the operator API) on a real HTTPS listener. */
export async function pkiHttpServer(
  service: PkiService,
  options: { caller?: (req: FastifyRequest) => Caller } = {},
) {
  const keys = await generateEcKeyPair()
  const now = new Date()
  const issued = await service.ca.issue(
    { kind: 'server', hosts: ['127.0.0.1', 'localhost'] },
    keys.publicKey,
    {
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 86_400_000),
    },
  )
  const app = Fastify({
    https: serverTlsOptions({ cert: issued.chainPem, key: await privateKeyToPem(keys.privateKey) }),
  })
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof Problem) {
      reply.code(err.status).type('application/problem+json').send(err.toJSON())
      return
    }
    const status = (err as { statusCode?: number }).statusCode
    if (status && status < 500) {
      reply.code(status).send({ title: 'Bad Request', status })
      return
    }
    reply.code(500).send({ title: 'Internal Server Error', status: 500 })
  })
  await pkiPublicRoutes(app, { service })
  if (options.caller) await pkiRoutes(app, { service, caller: options.caller })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  return { app, url: `https://127.0.0.1:${port}`, close: () => app.close() }
}
