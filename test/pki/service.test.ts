import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import type { Pdp } from '../../src/authz/contract.ts'
import { Problem } from '../../src/core/errors.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { createCsr } from '../../src/pki/csr.ts'
import { generateEcKeyPair, x509 } from '../../src/pki/keys.ts'
import { CrlChecker, type CrlDocument } from '../../src/pki/revocation.ts'
import type { Caller } from '../../src/pki/service.ts'
import { spiffeIdOfCertificate } from '../../src/pki/spiffe.ts'
import { ListPdp, pkiFixture, tempDir, testKek } from './helpers.ts'

const tenantCaller = (tenant: string, user = 'u1'): Caller => ({
  actor: { kind: 'user', id: user, realm: tenant },
  tenant,
  principal: { type: 'Dflare::User', id: user },
})

function status(err: unknown): number {
  return err instanceof Problem ? err.status : 0
}

test('component issuance, inventory, revocation and CRL, with events in the same transaction', async () => {
  const f = await pkiFixture()
  try {
    const issued = await f.service.issueComponent({ name: 'gateway' })
    assert.ok(issued.keyPem)
    const leaf = new x509.X509Certificate(issued.chainPem)
    assert.equal(spiffeIdOfCertificate(leaf)?.uri, 'spiffe://dflare.local/component/gateway')
    const life = leaf.notAfter.getTime() - f.clock.now().getTime()
    assert.ok(life <= 86_400_000 && life > 86_000_000, 'default lifetime 24 h')
    const rec = issued.certificate
    assert.equal(rec.status, 'valid')
    assert.equal(rec.spiffeId, 'spiffe://dflare.local/component/gateway')
    assert.deepEqual(rec.sans, [{ type: 'url', value: 'spiffe://dflare.local/component/gateway' }])
    assert.equal(f.events.events.at(-1)?.type, 'pki.certificate.issued')
    assert.doesNotMatch(JSON.stringify(f.events.events), /PRIVATE KEY/)

    const crl0 = await f.service.crl()
    assert.equal(crl0.number, 1)
    assert.equal(new x509.X509Crl(crl0.pem).findRevoked(leaf.serialNumber), null)

    const revoked = await f.service.revoke(rec.serial, 'keyCompromise')
    assert.equal(revoked.status, 'revoked')
    assert.equal(revoked.revocationReason, 'keyCompromise')
    assert.equal(f.events.events.at(-1)?.type, 'pki.certificate.revoked')
    await assert.rejects(f.service.revoke(rec.serial, 'unspecified'), (e) => status(e) === 409)

    const crl1 = await f.service.crl()
    assert.ok(crl1.number > crl0.number, 'CRL number increases')
    const parsed = new x509.X509Crl(crl1.pem)
    assert.ok(await parsed.verify({ publicKey: f.ca.intermediate }))
    const entry = parsed.findRevoked(leaf.serialNumber)
    assert.ok(entry)
    assert.equal(entry.reason, x509.X509CrlReason.keyCompromise)

    assert.deepEqual(
      (await f.service.list({ status: 'revoked' })).map((c) => c.serial),
      [rec.serial],
    )
    assert.equal((await f.service.list({ status: 'valid' })).length, 0)
  } finally {
    await f.close()
  }
})

test('a failing event sink rolls back the inventory change (fail closed)', async () => {
  const f = await pkiFixture()
  try {
    const issued = await f.service.issueComponent({ name: 'audit' })
    const original = f.events.record.bind(f.events)
    f.events.record = async () => {
      throw new Error('audit log unavailable')
    }
    await assert.rejects(f.service.revoke(issued.certificate.serial, 'unspecified'), /unavailable/)
    await assert.rejects(f.service.issueComponent({ name: 'iam' }), /unavailable/)
    f.events.record = original
    assert.equal((await f.service.get(issued.certificate.serial))?.status, 'valid')
    assert.equal((await f.service.list()).length, 1)
  } finally {
    await f.close()
  }
})

test('renewal keeps the identity, links the predecessor, and clears the near-expiry alarm', async () => {
  const f = await pkiFixture()
  try {
    const first = await f.service.issueComponent({ name: 'authz' })
    f.clock.advance(17 * 3_600_000) // past two-thirds of 24 h
    const near = await f.service.checkExpiry()
    assert.deepEqual(
      near.map((c) => c.serial),
      [first.certificate.serial],
    )
    assert.equal(f.events.events.at(-1)?.type, 'pki.certificate.expiring')
    const count = f.events.events.length
    await f.service.checkExpiry()
    assert.equal(f.events.events.length, count, 'one event per certificate')

    const renewed = await f.service.renew(first.certificate.serial)
    assert.equal(renewed.certificate.spiffeId, first.certificate.spiffeId)
    assert.equal(renewed.certificate.renewedFrom, first.certificate.serial)
    assert.equal(f.events.events.at(-1)?.type, 'pki.certificate.renewed')
    assert.deepEqual(await f.service.checkExpiry(), [])
    f.clock.advance(8 * 3_600_000)
    assert.equal((await f.service.get(first.certificate.serial))?.status, 'expired')
    await assert.rejects(f.service.renew(first.certificate.serial), (e) => status(e) === 409)
  } finally {
    await f.close()
  }
})

test('CSR issuance: tenants get only their own identities, and only with a PDP allow', async () => {
  const pdp = new ListPdp(
    new Set([
      'alice certificate.issue acme/spiffe://dflare.local/tenant/acme/node/gpu-01',
      'alice certificate.issue platform/spiffe://dflare.local/component/gateway',
      'alice certificate.issue globex/spiffe://dflare.local/tenant/globex/node/gpu-01',
      'op certificate.issue platform/spiffe://dflare.local/component/node-agent',
    ]),
  )
  const f = await pkiFixture({ pdp })
  try {
    const keys = await generateEcKeyPair()
    const own = 'spiffe://dflare.local/tenant/acme/node/gpu-01'
    const alice = tenantCaller('acme', 'alice')

    // Allowed: own tenant, PDP allows. The CSR's subject/extensions are not copied.
    const csr = await createCsr(keys, own)
    const ok = await f.service.issueFromCsr({ csr, identity: own }, alice)
    assert.equal(ok.certificate.tenant, 'acme')
    assert.equal(ok.certificate.kind, 'workload')
    assert.equal(ok.keyPem, undefined)
    const leaf = new x509.X509Certificate(ok.chainPem)
    assert.equal(spiffeIdOfCertificate(leaf)?.uri, own)
    assert.doesNotMatch(leaf.subject, /dflare workload/)
    assert.equal(f.events.events.at(-1)?.tenant, 'acme')

    // Never a platform identity, even if a (buggy) policy allowed it.
    const gw = 'spiffe://dflare.local/component/gateway'
    await assert.rejects(
      f.service.issueFromCsr({ csr: await createCsr(keys), identity: gw }, alice),
      (e) => status(e) === 403,
    )
    // Never another tenant's identity, even if a (buggy) policy allowed it.
    const theirs = 'spiffe://dflare.local/tenant/globex/node/gpu-01'
    await assert.rejects(
      f.service.issueFromCsr({ csr: await createCsr(keys), identity: theirs }, alice),
      (e) => status(e) === 403,
    )
    // Own tenant but the PDP says no.
    await assert.rejects(
      f.service.issueFromCsr(
        { csr: await createCsr(keys), identity: 'spiffe://dflare.local/tenant/acme/node/gpu-02' },
        alice,
      ),
      (e) => status(e) === 403,
    )
    // Wrong trust domain and malformed ids.
    for (const identity of [
      'spiffe://evil.example/tenant/acme/node/gpu-01',
      'spiffe://dflare.local/tenant/acme/../globex/x',
      'spiffe://dflare.local/tenant/acme',
      'https://dflare.local/tenant/acme/x',
    ])
      await assert.rejects(
        f.service.issueFromCsr({ csr: await createCsr(keys), identity }, alice),
        (e) => status(e) === 400,
        identity,
      )
    // A CSR asking for a different name than the authorized identity is refused.
    await assert.rejects(
      f.service.issueFromCsr({ csr: await createCsr(keys, gw), identity: own }, alice),
      (e) => status(e) === 400,
    )
    // A CSR whose signature does not verify (no proof of possession) is refused.
    const der = Buffer.from(x509.PemConverter.decodeFirst(csr))
    der[der.length - 3] = der[der.length - 3]! ^ 0xff
    await assert.rejects(
      f.service.issueFromCsr(
        { csr: x509.PemConverter.encode(der, 'CERTIFICATE REQUEST'), identity: own },
        alice,
      ),
      (e) => status(e) === 400,
    )
    await assert.rejects(
      f.service.issueFromCsr({ csr: 'garbage', identity: own }, alice),
      (e) => status(e) === 400,
    )
    // A platform operator allowed by policy gets a component identity through a CSR.
    const op = await f.service.issueFromCsr(
      { csr: await createCsr(keys), identity: 'spiffe://dflare.local/component/node-agent' },
      tenantCaller('platform', 'op'),
    )
    assert.equal(op.certificate.kind, 'component')
    // A tenant cannot revoke or renew another tenant's certificate (it looks absent).
    await assert.rejects(
      f.service.revoke(ok.certificate.serial, 'unspecified', tenantCaller('globex', 'bob')),
      (e) => status(e) === 404,
    )
    await assert.rejects(
      f.service.renew(op.certificate.serial, {}, alice),
      (e) => status(e) === 404,
    )
  } finally {
    await f.close()
  }
})

test('without a PDP, only the system caller can issue', async () => {
  const f = await pkiFixture()
  try {
    const keys = await generateEcKeyPair()
    await assert.rejects(
      f.service.issueFromCsr(
        { csr: await createCsr(keys), identity: 'spiffe://dflare.local/tenant/acme/x' },
        tenantCaller('acme'),
      ),
      (e) => status(e) === 403,
    )
  } finally {
    await f.close()
  }
})

test('CRL checker: fail closed before the first CRL and after nextUpdate; no rollback; no foreign signer', async () => {
  const f = await pkiFixture({ crlValidity: 600_000 })
  const t = await tempDir()
  try {
    let doc: CrlDocument = { crl: (await f.service.crl()).der, issuers: f.ca.chainPem }
    const checker = new CrlChecker({
      rootPem: f.ca.rootPem,
      source: async () => doc,
      refreshMs: 1000,
      clock: f.clock,
    })
    assert.equal(checker.status('abc'), 'unknown', 'no CRL yet: refuse')
    await checker.refresh()
    const a = await f.service.issueComponent({ name: 'gateway' })
    assert.equal(checker.status(a.certificate.serial), 'good')
    await f.service.revoke(a.certificate.serial, 'keyCompromise')
    const older = doc
    doc = { crl: (await f.service.crl()).der, issuers: f.ca.chainPem }
    await checker.refresh()
    assert.equal(checker.status(a.certificate.serial), 'revoked')
    assert.equal(checker.status(a.certificate.serial.toUpperCase()), 'revoked')

    // An older CRL (without the revocation) is refused: no rollback.
    doc = older
    await assert.rejects(checker.refresh(), /backwards/)
    assert.equal(checker.status(a.certificate.serial), 'revoked')

    // A CRL signed by another CA's intermediate, even one naming itself the same, is refused.
    const foreign = await openCa({ dir: join(t.dir, 'pki'), kek: testKek() })
    const forged = await foreign.ca.signCrl({
      entries: [],
      number: 1000,
      thisUpdate: f.clock.now(),
      nextUpdate: new Date(f.clock.now().getTime() + 600_000),
    })
    doc = { crl: forged.toString('pem'), issuers: `${foreign.ca.chainPem}${f.ca.chainPem}` }
    await assert.rejects(checker.refresh(), /not signed/)
    assert.equal(checker.status(a.certificate.serial), 'revoked')

    // Past nextUpdate with no fresh CRL: every peer is refused.
    f.clock.advance(600_001)
    assert.equal(checker.status('1234'), 'unknown')
  } finally {
    await t.cleanup()
    await f.close()
  }
})

test('property: whatever identity a tenant asks for, under a permissive policy it only ever gets its own', async () => {
  const allowAll: Pdp = {
    decide: async () => ({
      decision: 'allow',
      determining: ['bug'],
      errors: [],
      reason: 'allow-all',
    }),
  }
  const f = await pkiFixture({ pdp: allowAll })
  try {
    const csr = await createCsr(await generateEcKeyPair())
    const segment = fc.stringMatching(/^[a-z0-9.%_-]{1,12}$/)
    const identity = fc.oneof(
      fc
        .tuple(
          fc.constantFrom('acme', 'globex', 'platform', 'ACME', 'acme-'),
          fc.array(segment, { maxLength: 3 }),
        )
        .map(([t, p]) => `spiffe://dflare.local/tenant/${t}/${p.join('/')}`),
      segment.map((n) => `spiffe://dflare.local/component/${n}`),
      fc.string({ maxLength: 60 }).map((s) => `spiffe://dflare.local/${s}`),
      fc.constantFrom(
        'spiffe://dflare.local/tenant/acme/../globex/x',
        'spiffe://other.td/tenant/acme/x',
      ),
    )
    await fc.assert(
      fc.asyncProperty(identity, async (id) => {
        let issued: Awaited<ReturnType<typeof f.service.issueFromCsr>> | undefined
        try {
          issued = await f.service.issueFromCsr(
            { csr, identity: id },
            tenantCaller('acme', 'mallory'),
          )
        } catch (err) {
          return err instanceof Problem && (err.status === 400 || err.status === 403)
        }
        const got = spiffeIdOfCertificate(new x509.X509Certificate(issued.chainPem))
        return (
          got?.kind === 'tenant' &&
          got.tenant === 'acme' &&
          issued.certificate.tenant === 'acme' &&
          got.uri === id
        )
      }),
      { numRuns: 40 },
    )
  } finally {
    await f.close()
  }
})
