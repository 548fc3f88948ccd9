import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { restoreFromStore, SEGMENT_MAX, verifyStore } from '../../src/audit/backup.ts'
import { auditMigrations } from '../../src/audit/migrations.ts'
import { verifyDatabase } from '../../src/audit/tools.ts'
import { ObjectLockedError } from '../../src/core/objects/types.ts'
import { migratedDatabase } from '../support/db.ts'
import { type AuditFixture, auditFixture, recordMany } from './helpers.ts'
import type { MemoryObjectStore } from './memory-store.ts'

describe('audit backup to the object store', () => {
  let f: AuditFixture
  let store: MemoryObjectStore
  before(async () => {
    f = await auditFixture()
    store = f.objects as MemoryObjectStore
    await recordMany(f.audit, 400, { tenant: 'acme' })
    await recordMany(f.audit, 100, { tenant: 'platform' })
  })
  after(() => f.close())

  it('seals segments with retention, then only what is new', async () => {
    const first = await f.audit.backup.seal()
    assert.deepEqual(
      first.map((s) => [s.log, s.first, s.count]),
      [
        ['acme', 0, 400],
        ['platform', 0, 100],
      ],
    )
    const info = await store.head(first[0]!.key)
    const days = (info!.retainUntil!.getTime() - f.clock.now().getTime()) / 86_400_000
    assert.equal(days, 2190)
    await assert.rejects(store.delete(first[0]!.key), ObjectLockedError)
    assert.deepEqual(await f.audit.backup.seal(), [])
    await recordMany(f.audit, 50, { tenant: 'acme' })
    const second = await f.audit.backup.seal()
    assert.deepEqual(
      second.map((s) => [s.log, s.first, s.count]),
      [['acme', 400, 50]],
    )
    assert.ok(SEGMENT_MAX >= 450)
  })

  it('verifies from the object store alone, pinned to the published key', async () => {
    const keys = await f.audit.keys.verifierKeys()
    const r = await verifyStore(store, keys)
    assert.equal(r.trust, 'pinned')
    assert.deepEqual(
      r.logs.map((l) => [l.log, l.ok, l.ok && l.size]),
      [
        ['acme', true, 450],
        ['platform', true, 100],
      ],
    )
  })

  it('restores into an empty database that then verifies', async () => {
    const t = await migratedDatabase([auditMigrations])
    try {
      const restored = await restoreFromStore(store, t.db)
      assert.deepEqual(restored, { logs: 2, events: 550 })
      const keys = await f.audit.keys.verifierKeys()
      const report = await verifyDatabase(t.db, { keys })
      assert.ok(report.ok, JSON.stringify(report))
      const original = await f.db.query<{ log: string; root: Buffer }>(
        'SELECT log, root FROM audit.events WHERE idx = 449 AND log = $1',
        ['acme'],
      )
      const copy = await t.db.query<{ root: Buffer }>(
        "SELECT root FROM audit.heads WHERE log = 'acme'",
      )
      assert.ok(original.rows[0]!.root.equals(copy.rows[0]!.root))
      await assert.rejects(restoreFromStore(store, t.db), /empty/)
    } finally {
      await t.close()
    }
  })

  it('a tampered or missing segment fails verification naming the index', async () => {
    const keys = await f.audit.keys.verifierKeys()
    const key = [...store.objects.keys()].find((k) => k.includes('/acme/00000000000000000400'))!
    const original = store.objects.get(key)!
    const forged = original.body
      .toString()
      .replace('"outcome\\":\\"denied', '"outcome\\":\\"success')
    assert.notEqual(forged, original.body.toString())
    store.objects.set(key, { ...original, body: Buffer.from(forged) })
    const r = await verifyStore(store, keys)
    const acme = r.logs.find((l) => l.log === 'acme')!
    assert.ok(!acme.ok && acme.firstBadIndex >= 400, JSON.stringify(acme))
    store.objects.set(key, original)
    // Dropping a segment (bypassing the lock) leaves a gap that is named.
    const firstKey = [...store.objects.keys()].find((k) =>
      k.includes('/acme/00000000000000000000'),
    )!
    const saved = store.objects.get(firstKey)!
    store.objects.delete(firstKey)
    const gone = (await verifyStore(store, keys)).logs.find((l) => l.log === 'acme')!
    assert.deepEqual(gone.ok === false && [gone.firstBadIndex], [0])
    store.objects.set(firstKey, saved)
    assert.ok((await verifyStore(store, keys)).logs.every((l) => l.ok))
  })
})
