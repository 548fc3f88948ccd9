import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createAudit } from '../../src/audit/component.ts'
import { auditMigrations } from '../../src/audit/migrations.ts'
import { ManualClock } from '../../src/core/clock.ts'
import { migratedDatabase } from '../support/db.ts'
import { event, runtimeFor } from './helpers.ts'
import { MemoryObjectStore } from './memory-store.ts'

describe('audit component', () => {
  it('issues checkpoints and seals backups on its schedule, and stops cleanly', async () => {
    const t = await migratedDatabase([auditMigrations])
    const home = await mkdtemp(join(tmpdir(), 'dflare-audit-comp-'))
    const objects = new MemoryObjectStore()
    try {
      const audit = await createAudit(
        runtimeFor(t.db, home, objects, new ManualClock(), {
          DFLARE_AUDIT_CHECKPOINT_INTERVAL: '1s',
          DFLARE_AUDIT_BACKUP_INTERVAL: '1s',
        }),
      )
      await audit.component.start?.()
      await Promise.all([1, 2, 3].map((i) => audit.sink.record(event(i))))
      for (let i = 0; i < 100 && objects.objects.size === 0; i++) await sleep(100)
      const cp = await audit.checkpoints.latest('acme')
      assert.equal(cp?.size, 3)
      assert.deepEqual(
        [...objects.objects.keys()],
        ['audit/v1/acme/00000000000000000000-00000000000000000003.ndjson'],
      )
      await audit.component.stop?.()
      await assert.rejects(audit.sink.record(event(4)), /closed/)
    } finally {
      await t.close()
      await rm(home, { recursive: true, force: true })
    }
  })
})

describe('audit signing key rotation', () => {
  it('keeps old checkpoints verifiable after a rotation', async () => {
    const { auditFixture, recordMany } = await import('./helpers.ts')
    const { openCheckpoint } = await import('../../src/audit/note.ts')
    const { verifyDatabase } = await import('../../src/audit/tools.ts')
    const f = await auditFixture()
    try {
      await recordMany(f.audit, 10)
      const before = await f.audit.checkpoints.issue('acme')
      const oldKey = await f.audit.keys.current()
      const newKey = await f.audit.keys.rotate()
      assert.notEqual(newKey.vkey, oldKey.vkey)
      await recordMany(f.audit, 10)
      const after = await f.audit.checkpoints.issue('acme')
      assert.notEqual(after.keyId, before.keyId)
      const keys = await f.audit.keys.verifierKeys()
      assert.equal(keys.length, 2)
      assert.equal(openCheckpoint(before.note, keys).verifiedBy[0]!.vkey, oldKey.vkey)
      assert.equal(openCheckpoint(after.note, keys).verifiedBy[0]!.vkey, newKey.vkey)
      assert.ok((await verifyDatabase(f.db)).ok)
      // Pinning only the new key: the old checkpoint no longer counts as trusted.
      const pinned = keys.filter((k) => k.vkey === newKey.vkey)
      assert.equal((await verifyDatabase(f.db, { keys: pinned })).ok, false)
    } finally {
      await f.close()
    }
  })
})
