import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import type { PgliteDb } from '../../../src/core/db/pglite.ts'
import { type CheckpointPolicy, checkpointDue } from '../../../src/core/db/pglite-checkpoint.ts'
import { withDiskDb } from '../../support/temp-dir.ts'
import { until } from '../../support/until.ts'

const MB = 1024 * 1024

const withDb = (policy: CheckpointPolicy, fn: (db: PgliteDb, dir: string) => Promise<void>) =>
  withDiskDb('dflare-ckpt-', { checkpoints: policy }, fn)

const redo = async (db: PgliteDb) =>
  (await db.query<{ lsn: string }>('SELECT redo_lsn::text AS lsn FROM pg_control_checkpoint()'))
    .rows[0]!.lsn

/** Writes about `bytes` of WAL in 2 kB rows. */
async function writeWal(db: PgliteDb, bytes: number) {
  await db.query('CREATE TABLE IF NOT EXISTS ckpt_probe (body text)')
  const rows = Math.ceil(bytes / 2200)
  for (let i = 0; i < rows; i += 100)
    await db.query("INSERT INTO ckpt_probe SELECT repeat('x', 2000) FROM generate_series(1, 100)")
}

describe('core/db/pglite-checkpoint: the embedded database checkpoints itself', () => {
  it('is due on enough WAL, or on any WAL once the last checkpoint is old enough (property)', () => {
    fc.assert(
      fc.property(
        fc.nat(10 * MB),
        fc.nat(600_000),
        fc.integer({ min: 1, max: 10 * MB }),
        fc.integer({ min: 1, max: 600_000 }),
        fc.boolean(),
        (wal, age, walLimitBytes, maxAgeMs, written) => {
          const due = checkpointDue({ walLimitBytes, maxAgeMs, intervalMs: 1 }, wal, age, written)
          assert.equal(due, wal >= walLimitBytes || (written && age >= maxAgeMs))
        },
      ),
    )
  })

  it('checkpoints once the WAL since the last one passes the limit, and recycles segments', async () => {
    await withDb(
      { walLimitBytes: 2 * MB, maxAgeMs: 3_600_000, intervalMs: 20 },
      async (db, dir) => {
        const before = await redo(db)
        await writeWal(db, 40 * MB)
        assert.ok(await until(async () => (await redo(db)) !== before), 'no checkpoint')
        // Old segments went with the checkpoints: not 40 MB of 16 MB files.
        await until(async () => false, 100)
        const segments = (await readdir(join(dir, 'pg_wal'))).filter((f) =>
          /^[0-9A-F]{24}$/.test(f),
        )
        assert.ok(segments.length <= 6, `${segments.length} segment files`)
      },
    )
  })

  it('does not checkpoint an idle database, nor below the limit while the last one is recent', async () => {
    await withDb({ walLimitBytes: 64 * MB, maxAgeMs: 3_600_000, intervalMs: 20 }, async (db) => {
      const before = await redo(db)
      await writeWal(db, 1 * MB)
      await new Promise((r) => setTimeout(r, 300))
      assert.equal(await redo(db), before)
    })
  })

  it('checkpoints a little WAL once the last checkpoint is older than the age limit', async () => {
    await withDb({ walLimitBytes: 64 * MB, maxAgeMs: 0, intervalMs: 20 }, async (db) => {
      // An idle database with nothing new is left alone even then.
      await until(async () => false, 100)
      const idle = await redo(db)
      await new Promise((r) => setTimeout(r, 200))
      assert.equal(await redo(db), idle)
      await writeWal(db, 10_000)
      assert.ok(await until(async () => (await redo(db)) !== idle), 'no checkpoint')
    })
  })
})
