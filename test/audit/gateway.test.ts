import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { type AuditApiDeps, auditApiRoutes } from '../../src/audit/api.ts'
import { CheckpointService } from '../../src/audit/checkpoints.ts'
import { KeyRing } from '../../src/audit/keys.ts'
import { openCheckpoint, parseVerifierKey } from '../../src/audit/note.ts'
import { ProofService } from '../../src/audit/proofs.ts'
import { Pseudonymizer } from '../../src/audit/pseudonym.ts'
import { QueryService } from '../../src/audit/query.ts'
import { AuditSequencer } from '../../src/audit/sequencer.ts'
import { AuditSink } from '../../src/audit/sink.ts'
import { systemClock } from '../../src/core/clock.ts'
import { type GatewayWorld, gatewayWorld } from '../gateway/world.ts'
import { event } from './helpers.ts'
import { leaf, verifyConsistency, verifyInclusion } from './rfc6962.ts'

const b64 = (s: string) => Buffer.from(s, 'base64')

describe('audit API behind the real gateway (authentication, Cedar, tenant isolation)', () => {
  let w: GatewayWorld
  // Filled once the world's database exists; the routes read it per request.
  const deps = {} as AuditApiDeps
  let sink: AuditSink
  let keyDir: string
  before(async () => {
    w = await gatewayWorld({ routes: auditApiRoutes(deps) })
    const p = new Pseudonymizer(randomBytes(32), { pseudonymizeIps: false })
    keyDir = `/tmp/dflare-audit-gw-${randomBytes(4).toString('hex')}`
    const keys = new KeyRing(w.db, keyDir, 'gw.test/audit')
    const sequencer = new AuditSequencer({
      db: w.db,
      batch: 1000,
      delayMs: 0,
      pollMs: 1000,
      onError: () => {},
    })
    const drain = () => sequencer.drain()
    Object.assign(deps, {
      query: new QueryService(w.db, p, drain),
      proofs: new ProofService(w.db),
      checkpoints: new CheckpointService(w.db, keys, 'gw.test/audit', drain),
      keys,
    })
    sink = new AuditSink({ db: w.db, clock: systemClock, pseudonymizer: p, maxBatch: 500 })
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        sink.record(event(i, { tenant: i % 3 ? 'acme' : 'globex' })),
      ),
    )
    await w.bind('acme', 'aud', 'auditor', ['Tenant', 'acme'])
  })
  after(async () => {
    await sink.close()
    await w.close()
    await rm(keyDir, { recursive: true, force: true })
  })

  it("a tenant's auditor reads its own log, and nothing of another tenant's", async () => {
    const token = await w.as('acme', 'aud')
    const r = await w.call('GET', '/api/v1/tenants/acme/audit/events?limit=1000', { token })
    assert.equal(r.status, 200, r.body)
    const page = JSON.parse(r.body)
    assert.equal(page.events.length, 200)
    assert.ok(page.events.every((e: { log: string }) => e.log === 'acme'))
    for (const path of [
      '/api/v1/tenants/globex/audit/events',
      '/api/v1/tenants/globex/audit/checkpoint',
      '/api/v1/tenants/globex/audit/proofs/inclusion?index=0&size=1',
      '/api/v1/audit/events',
    ])
      assert.ok([401, 403, 404].includes((await w.call('GET', path, { token })).status), path)
    // Reading is not exporting: the auditor role may not export.
    assert.equal((await w.call('GET', '/api/v1/tenants/acme/audit/export', { token })).status, 403)
  })

  it('a tenant viewer may not read the audit log', async () => {
    const token = await w.as('acme', 'vic')
    assert.equal((await w.call('GET', '/api/v1/tenants/acme/audit/events', { token })).status, 403)
  })

  it('the security officer reads every log', async () => {
    const token = await w.as('platform', 'officer')
    const r = await w.call('GET', '/api/v1/audit/events?limit=1000', { token })
    assert.equal(r.status, 200, r.body)
    const logs = new Set(JSON.parse(r.body).events.map((e: { log: string }) => e.log))
    assert.deepEqual([...logs].sort(), ['acme', 'globex'])
  })

  it('serves checkpoints and proofs that verify independently', async () => {
    const token = await w.as('acme', 'aud')
    const keys = JSON.parse(
      (await w.call('GET', '/api/v1/tenants/acme/audit/keys', { token })).body,
    ).keys.map(parseVerifierKey)
    const c1 = JSON.parse(
      (await w.call('POST', '/api/v1/tenants/acme/audit/checkpoint', { token })).body,
    )
    const cp1 = openCheckpoint(c1.note, keys)
    await Promise.all(Array.from({ length: 50 }, (_, i) => sink.record(event(i))))
    const cp2 = openCheckpoint(
      JSON.parse((await w.call('POST', '/api/v1/tenants/acme/audit/checkpoint', { token })).body)
        .note,
      keys,
    )
    assert.equal(cp2.size, cp1.size + 50)
    const e = JSON.parse(
      (await w.call('GET', '/api/v1/tenants/acme/audit/events/7', { token })).body,
    )
    const proof = JSON.parse(
      (
        await w.call(
          'GET',
          `/api/v1/tenants/acme/audit/proofs/inclusion?index=7&size=${cp2.size}`,
          {
            token,
          },
        )
      ).body,
    )
    assert.ok(
      verifyInclusion(7, cp2.size, leaf(Buffer.from(e.body)), proof.auditPath.map(b64), cp2.root),
    )
    const c = JSON.parse(
      (
        await w.call(
          'GET',
          `/api/v1/tenants/acme/audit/proofs/consistency?first=${cp1.size}&second=${cp2.size}`,
          { token },
        )
      ).body,
    )
    assert.ok(verifyConsistency(cp1.size, cp2.size, cp1.root, cp2.root, c.proof.map(b64)))
  })

  it('the gateway records every read of the audit log', async () => {
    const reads = (await w.events.all()).filter((e) => e.action === 'auditlog.read')
    assert.ok(
      reads.some((e) => e.tenant === 'acme' && e.actor.id === 'aud' && e.outcome === 'success'),
    )
    assert.ok(reads.some((e) => e.tenant === 'acme' && e.outcome === 'denied'))
  })
})
