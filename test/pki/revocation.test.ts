import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import fc from 'fast-check'
import { openCa } from '../../src/pki/ca-store.ts'
import { CrlChecker, type CrlDocument } from '../../src/pki/revocation.ts'
import { componentId, parseSpiffeId } from '../../src/pki/spiffe.ts'
import { pkiFixture, tempDir, testKek } from './helpers.ts'

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

test('SPIFFE ids: only the two documented shapes parse, and parsing round-trips', () => {
  assert.equal(parseSpiffeId(componentId('dflare.local', 'gateway'))?.kind, 'component')
  for (const bad of [
    'spiffe://dflare.local/component/Gateway',
    'spiffe://dflare.local/component/gw/extra',
    'spiffe://dflare.local/tenant/acme',
    'spiffe://dflare.local/tenant/acme/../x',
    'spiffe://dflare.local/tenant/acme/./x',
    'spiffe://dflare.local/tenant/acme//x',
    'spiffe://dflare.local/tenant/acme/x?y',
    'spiffe://dflare.local/tenant/acme/x#y',
    'spiffe://user@dflare.local/component/gw',
    'spiffe://dflare.local:443/component/gw',
    'spiffe://DFLARE.local/component/gw',
    'SPIFFE://dflare.local/component/gw',
    'spiffe://dflare.local/component/gw/',
    'spiffe://dflare.local/tenant/acme/x%2F..',
  ])
    assert.equal(parseSpiffeId(bad), undefined, bad)
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (s) => {
      const id = parseSpiffeId(`spiffe://dflare.local/${s}`)
      if (!id) return true
      // Whatever parses names exactly one of the two kinds, with no traversal segments.
      if (id.kind === 'tenant')
        return !id.path.includes('..') && !id.path.includes('.') && id.tenant.length > 0
      return id.uri === componentId('dflare.local', id.name)
    }),
  )
})
