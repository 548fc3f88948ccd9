import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import Fastify from 'fastify'
import pino from 'pino'
import { Registry } from 'prom-client'
import type { Pdp } from '../../src/authz/contract.ts'
import { ManualClock, systemClock } from '../../src/core/clock.ts'
import type { SecurityEvent } from '../../src/core/events.ts'
import { MemoryEventSink } from '../../src/core/events.ts'
import type { ObjectStore } from '../../src/core/objects/types.ts'
import type { Principal } from '../../src/gateway/principal.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { createPki } from '../../src/pki/component.ts'
import { createCsr } from '../../src/pki/csr.ts'
import { generateEcKeyPair, privateKeyToPem, x509 } from '../../src/pki/keys.ts'
import { renewalProof } from '../../src/pki/renewal.ts'
import { ensureServerTls } from '../../src/pki/server-identity.ts'
import { spiffeIdOfCertificate } from '../../src/pki/spiffe.ts'
import type { Runtime } from '../../src/server/component.ts'
import { loadDflareConfig } from '../../src/server/config.ts'
import {
  pkiFixture,
  pkiHttpServer,
  sharedDatabase,
  tempDir,
  testKek,
  testPrincipal,
  userPrincipal,
} from './helpers.ts'

const ACME = 'spiffe://dflare.local/tenant/acme/node/gpu-01'
let f: Awaited<ReturnType<typeof pkiFixture>>
let http: Awaited<ReturnType<typeof pkiHttpServer>>

/** A stand-in policy: same-tenant or platform callers are allowed, unless the resource is denied. */
const policy = { denied: new Set<string>(), allowAll: false }
const pdp: Pdp = {
  async decide(r) {
    const callerTenant = r.principal.id.split('/')[0]
    const resourceTenant =
      r.resource.type === 'Dflare::Tenant' ? r.resource.id : r.resource.id.split('/')[0]
    const allow =
      policy.allowAll ||
      (!policy.denied.has(r.resource.id) &&
        (callerTenant === 'platform' || callerTenant === resourceTenant))
    return allow
      ? { decision: 'allow', determining: ['test-permit'], errors: [], reason: 'allowed' }
      : { decision: 'deny', determining: [], errors: [], reason: 'denied by test policy' }
  },
}

before(async () => {
  f = await pkiFixture({ clock: systemClock })
  http = await pkiHttpServer(f.service, { pdp, events: f.events, db: f.db })
})

after(async () => {
  await http?.close()
  await f?.close()
})

const alice = userPrincipal('acme', 'alice')
const operator = userPrincipal('platform', 'op')

async function call(method: string, path: string, as: Principal | undefined, body?: unknown) {
  testPrincipal.current = as
  const res = await http.app.inject({
    method: method as 'GET',
    url: path,
    headers: body ? { 'content-type': 'application/json' } : {},
    payload: body ? JSON.stringify(body) : undefined,
  })
  testPrincipal.current = undefined
  return {
    status: res.statusCode,
    json: () => res.json(),
    raw: res.rawPayload,
    headers: res.headers,
  }
}

test('operator API through the gateway: tenants issue only their own identities, see only their certificates', async () => {
  const csr = await createCsr(await generateEcKeyPair())
  assert.equal((await call('GET', '/api/v1/pki/certificates', undefined)).status, 401)

  const created = await call('POST', '/api/v1/tenants/acme/pki/certificates', alice, {
    identity: ACME,
    csr,
  })
  assert.equal(created.status, 201, JSON.stringify(created.json()))
  assert.doesNotMatch(JSON.stringify(created.json()), /PRIVATE KEY/)
  const serial = created.json().certificate.serial
  assert.equal(spiffeIdOfCertificate(new x509.X509Certificate(created.json().chain))?.uri, ACME)
  // The inventory change, its pki event and the gateway's request event were all recorded.
  const types = f.events.events.map((e) => e.type)
  assert.ok(types.includes('pki.certificate.issued') && types.includes('api.request'))

  // Another tenant's identity or a platform identity is not there to be issued, even when the
  // policy (wrongly) allows everything.
  policy.allowAll = true
  try {
    for (const identity of [
      'spiffe://dflare.local/component/gateway',
      'spiffe://dflare.local/tenant/globex/node/x',
    ])
      assert.equal(
        (await call('POST', '/api/v1/tenants/acme/pki/certificates', alice, { identity, csr }))
          .status,
        404,
        identity,
      )
    assert.equal(
      (
        await call('POST', '/api/v1/tenants/globex/pki/certificates', alice, {
          identity: 'spiffe://dflare.local/tenant/globex/node/x',
          csr,
        })
      ).status,
      404,
    )
    assert.equal(
      (await call('POST', '/api/v1/pki/certificates', alice, { identity: ACME, csr })).status,
      404,
    )
  } finally {
    policy.allowAll = false
  }
  // The API does not generate keys: a CSR is required.
  assert.equal(
    (await call('POST', '/api/v1/tenants/acme/pki/certificates', alice, { identity: ACME })).status,
    400,
  )
  // The policy says no.
  const denied = 'spiffe://dflare.local/tenant/acme/node/gpu-02'
  policy.denied.add(`acme/${denied}`)
  assert.equal(
    (await call('POST', '/api/v1/tenants/acme/pki/certificates', alice, { identity: denied, csr }))
      .status,
    403,
  )

  await f.service.issueComponent({ name: 'iam' })
  const acmeList = (
    await call('GET', '/api/v1/tenants/acme/pki/certificates?tenant=platform', alice)
  ).json().items
  assert.deepEqual(
    acmeList.map((c: { serial: string }) => c.serial),
    [serial],
  )
  const all = (await call('GET', '/api/v1/pki/certificates', operator)).json().items
  assert.equal(all.length, 2)
  assert.ok(all.every((c: Record<string, unknown>) => !('pem' in c)))
  const iam = all.find((c: { kind: string }) => c.kind === 'component')
  assert.equal(
    (await call('GET', `/api/v1/tenants/acme/pki/certificates/${iam.serial}`, alice)).status,
    404,
  )
  assert.equal(
    (await call('POST', `/api/v1/tenants/acme/pki/certificates/${iam.serial}/revoke`, alice, {}))
      .status,
    404,
  )
  assert.equal((await call('GET', `/api/v1/pki/certificates/${iam.serial}`, alice)).status, 404)
  const one = await call('GET', `/api/v1/tenants/acme/pki/certificates/${serial}`, alice)
  assert.equal(one.json().status, 'valid')
  assert.match(one.json().pem, /BEGIN CERTIFICATE/)

  // If the audit log cannot record the request, the revocation does not happen either.
  const record = f.events.record.bind(f.events)
  f.events.record = async (e: SecurityEvent) => {
    if (e.type === 'api.request') throw new Error('audit down')
    return record(e)
  }
  try {
    assert.equal(
      (await call('POST', `/api/v1/tenants/acme/pki/certificates/${serial}/revoke`, alice, {}))
        .status,
      503,
    )
  } finally {
    f.events.record = record
  }
  assert.equal((await f.service.get(serial))?.status, 'valid')

  const revoked = await call(
    'POST',
    `/api/v1/tenants/acme/pki/certificates/${serial}/revoke`,
    alice,
    { reason: 'keyCompromise' },
  )
  assert.equal(revoked.status, 200)
  assert.equal(revoked.json().status, 'revoked')
  const crl = await call('GET', '/pki/crl', undefined)
  assert.equal(crl.headers['content-type'], 'application/pkix-crl')
  const parsed = new x509.X509Crl(new Uint8Array(crl.raw))
  assert.ok(await parsed.verify({ publicKey: f.ca.intermediate }))
  assert.ok(parsed.findRevoked(serial))
  const chain = await call('GET', '/pki/ca', undefined)
  assert.equal(x509.PemConverter.decode(chain.raw.toString()).length, 2)
  assert.equal((await call('GET', '/api/v1/pki/ca', operator)).json().root, f.ca.rootPem)
  assert.equal(
    (await call('GET', '/api/v1/pki/crl', alice)).status,
    404,
    'platform route, tenant caller',
  )
})

test('self-renewal by proof of possession; revoked, foreign and mismatched proofs are refused', async () => {
  const first = await f.service.issueComponent({ name: 'gateway' })
  const current = { cert: first.chainPem, key: first.keyPem! }
  const keys = await generateEcKeyPair()
  const csr = await createCsr(keys)
  const ok = await call('POST', '/pki/renew', undefined, {
    csr,
    proof: await renewalProof(current, csr),
  })
  assert.equal(ok.status, 200)
  const renewed = ok.json()
  assert.equal(renewed.certificate.spiffeId, 'spiffe://dflare.local/component/gateway')
  assert.equal(renewed.certificate.renewedFrom, first.certificate.serial)

  // The proof binds the CSR: it cannot be replayed for another key.
  const otherCsr = await createCsr(await generateEcKeyPair())
  assert.equal(
    (
      await call('POST', '/pki/renew', undefined, {
        csr: otherCsr,
        proof: await renewalProof(current, csr),
      })
    ).status,
    403,
  )

  // A certificate from another CA (same identity) cannot renew.
  const t = await tempDir()
  try {
    const foreign = await openCa({ dir: join(t.dir, 'pki'), kek: testKek() })
    const fk = await generateEcKeyPair()
    const now = Date.now()
    const forged = await foreign.ca.issue(
      { kind: 'service', spiffeId: 'spiffe://dflare.local/component/gateway' },
      fk.publicKey,
      {
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + 3_600_000),
      },
    )
    const fcur = { cert: forged.chainPem, key: await privateKeyToPem(fk.privateKey) }
    assert.equal(
      (await call('POST', '/pki/renew', undefined, { csr, proof: await renewalProof(fcur, csr) }))
        .status,
      403,
    )
  } finally {
    await t.cleanup()
  }

  // A revoked certificate cannot renew itself.
  await f.service.revoke(first.certificate.serial, 'keyCompromise')
  assert.equal(
    (await call('POST', '/pki/renew', undefined, { csr, proof: await renewalProof(current, csr) }))
      .status,
    403,
  )
  // A proof signed by a key other than the certificate's is refused.
  const stolenCert = { cert: renewed.chain, key: await privateKeyToPem(keys.privateKey) }
  const wrongKey = { ...stolenCert, key: current.key }
  assert.equal(
    (await call('POST', '/pki/renew', undefined, { csr, proof: await renewalProof(wrongKey, csr) }))
      .status,
    403,
  )
  assert.equal(
    (await call('POST', '/pki/renew', undefined, { csr, proof: 'e30.e30.AAAA' })).status,
    403,
  )
})

test('createPki: CA on first boot, listener certificate in the inventory, metrics, identities', async () => {
  const t = await tempDir()
  const database = await sharedDatabase()
  await database.db.query('TRUNCATE pki.certificates, pki.crl_numbers')
  try {
    const { config } = loadDflareConfig({ env: { DFLARE_HOME: t.dir } })
    // The listener's certificate comes first (the server calls this before components start).
    await ensureServerTls({ dir: join(t.dir, 'pki'), hosts: ['127.0.0.1'] })
    const clock = new ManualClock(new Date())
    const events = new MemoryEventSink()
    const metrics = new Registry()
    const rt: Runtime = {
      config,
      db: database.db,
      objects: {} as ObjectStore,
      log: pino({ level: 'silent' }),
      metrics,
      clock,
      events,
      publicUrl: new URL('https://127.0.0.1:8443'),
    }
    const pki = await createPki(rt)
    assert.ok(existsSync(join(t.dir, 'kek')))
    const app = Fastify()
    await pki.routes!(app)
    await pki.start!()
    try {
      const servers = await pki.service.list({ kind: 'server' })
      assert.equal(servers.length, 1, 'listener certificate recorded')
      const text = await metrics.metrics()
      assert.match(text, /dflare_pki_certificates_near_expiry 0/)
      assert.match(text, /dflare_pki_intermediate_expiry_seconds \d+/)

      const svid = await pki.identity('audit')
      const leaf = new x509.X509Certificate(svid.current().cert)
      assert.equal(spiffeIdOfCertificate(leaf)?.uri, 'spiffe://dflare.local/component/audit')
      await svid.rotate()
      assert.notEqual(new x509.X509Certificate(svid.current().cert).serialNumber, leaf.serialNumber)

      const checker = await pki.revocation()
      assert.equal(checker.status(leaf.serialNumber), 'good')

      // The operator API is only ever mounted by the gateway (every route declares its action).
      assert.equal(
        (await app.inject({ method: 'GET', url: '/api/v1/pki/certificates' })).statusCode,
        404,
      )
      assert.ok(
        pki.apiRoutes.length >= 10 &&
          pki.apiRoutes.every((r) => r.action.startsWith('certificate.')),
      )
      assert.equal((await app.inject({ method: 'GET', url: '/pki/ca' })).statusCode, 200)
      assert.ok(events.events.some((e) => e.type === 'pki.certificate.issued'))
    } finally {
      await pki.stop!()
      await app.close()
    }
  } finally {
    await t.cleanup()
  }
})
