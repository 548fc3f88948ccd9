import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import Fastify from 'fastify'
import pino from 'pino'
import { Registry } from 'prom-client'
import { ManualClock } from '../../src/core/clock.ts'
import { MemoryEventSink } from '../../src/core/events.ts'
import type { ObjectStore } from '../../src/core/objects/types.ts'
import { createPki } from '../../src/pki/component.ts'
import { x509 } from '../../src/pki/keys.ts'
import { ensureServerTls } from '../../src/pki/server-identity.ts'
import { spiffeIdOfCertificate } from '../../src/pki/spiffe.ts'
import type { Runtime } from '../../src/server/component.ts'
import { loadDflareConfig } from '../../src/server/config.ts'
import { sharedDatabase, tempDir } from './helpers.ts'

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

      // Without the gateway, the operator API is closed.
      const res = await app.inject({ method: 'GET', url: '/api/v1/pki/certificates' })
      assert.equal(res.statusCode, 401)
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
