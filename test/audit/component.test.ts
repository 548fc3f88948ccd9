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

describe('audit trust anchor', () => {
  it("a rewrite re-signed with a key the owner slipped into audit.keys fails against this host's keys", async () => {
    const { generateKeyPairSync } = await import('node:crypto')
    const { auditFixture, recordMany } = await import('./helpers.ts')
    const { Frontier, leafHash } = await import('../../src/audit/merkle.ts')
    const { checkpointText, rawPublicKey, signNote, verifierKey } = await import(
      '../../src/audit/note.ts'
    )
    const { verifyDatabase } = await import('../../src/audit/tools.ts')
    const f = await auditFixture()
    try {
      await recordMany(f.audit, 20)
      await f.audit.checkpoints.issue('acme')
      // The attacker: owner access to the database, but not the signing key file.
      const { privateKey, publicKey } = generateKeyPairSync('ed25519')
      const evil = verifierKey('audit.test/log', rawPublicKey(publicKey))
      const { rows } = await f.db.query<{ idx: number; body: string }>(
        "SELECT idx, body FROM audit.events WHERE log = 'acme' ORDER BY idx",
      )
      const fr = new Frontier()
      await f.db.transaction(async (tx) => {
        await tx.query('SET LOCAL session_replication_role = replica')
        for (const r of rows) {
          const body = r.body.replace('"outcome":"denied"', '"outcome":"success"')
          const h = leafHash(Buffer.from(body))
          fr.append(h)
          await tx.query(
            "UPDATE audit.events SET body = $1, leaf_hash = $2, root = $3 WHERE log = 'acme' AND idx = $4",
            [body, h, fr.root(), r.idx],
          )
        }
        await tx.query("UPDATE audit.heads SET root = $1, frontier = $2 WHERE log = 'acme'", [
          fr.root(),
          Buffer.concat(fr.hashes),
        ])
        await tx.query("DELETE FROM audit.nodes WHERE log = 'acme'")
        await tx.query("DELETE FROM audit.checkpoints WHERE log = 'acme'")
        await tx.query('INSERT INTO audit.keys (key_id, name, vkey) VALUES ($1, $2, $3)', [
          evil.id.toString('hex'),
          evil.name,
          evil.vkey,
        ])
        const note = signNote(
          checkpointText({ origin: 'audit.test/log/acme', size: 20, root: fr.root() }),
          [{ name: evil.name, id: evil.id, privateKey }],
        )
        await tx.query(
          "INSERT INTO audit.checkpoints (log, size, root, key_id, note) VALUES ('acme', 20, $1, $2, $3)",
          [fr.root(), evil.id.toString('hex'), note],
        )
      })
      // Trusting the database's own key list, the forgery passes: that is why it is not the default.
      assert.equal((await verifyDatabase(f.db, { logs: ['acme'] })).ok, true)
      const local = await f.audit.keys.localVerifierKeys()
      const report = await verifyDatabase(f.db, { logs: ['acme'], keys: local, trust: 'local' })
      assert.equal(report.ok, false)
      assert.equal(report.trust, 'local')
    } finally {
      await f.close()
    }
  })
})
