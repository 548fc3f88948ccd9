import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { PgliteDb } from '../../../src/core/db/pglite.ts'
import { type EmscriptenFs, installHostFsync } from '../../../src/core/db/pglite-durable.ts'

const FSYNC_FAILS = fileURLToPath(new URL('./fsync-fails.ts', import.meta.url))

describe('embedded database durability (PGlite on disk)', () => {
  it('a write commits only once its WAL is synced to disk; a read needs no sync', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'dflare-durable-'))
    const db = await PgliteDb.open(join(dir, 'data'))
    try {
      await db.query('CREATE TABLE probe (v int)')
      const fsync = t.mock.method(fs, 'fsyncSync')
      await db.transaction(async (tx) => {
        await tx.query('INSERT INTO probe VALUES (1)')
      })
      assert.ok(fsync.mock.callCount() >= 1, 'the COMMIT synced the WAL')
      fsync.mock.resetCalls()
      await db.transaction(async (tx) => tx.query('SELECT * FROM probe'), { readOnly: true })
      assert.equal(fsync.mock.callCount(), 0, 'a read-only transaction writes no WAL')
    } finally {
      await db.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("NODEFS's fsync syncs the host's file, or opens and syncs the host's directory", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'dflare-durable-'))
    const fd = fs.openSync(join(dir, 'file'), 'w')
    try {
      const mod: EmscriptenFs = { NODEFS: { stream_ops: {}, realPath: () => dir } }
      installHostFsync(mod)
      const fsync = t.mock.method(fs, 'fsyncSync')
      assert.equal(mod.NODEFS.stream_ops.fsync!({ nfd: fd, node: {} }), 0)
      assert.deepEqual(fsync.mock.calls[0]!.arguments, [fd])
      assert.equal(mod.NODEFS.stream_ops.fsync!({ node: {} }), 0)
      assert.equal(fsync.mock.callCount(), 2, 'the directory was synced through an fd of its own')
      assert.notEqual(fsync.mock.calls[1]!.arguments[0], fd)
    } finally {
      fs.closeSync(fd)
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a failed fsync stops the process before the commit is acknowledged; the next start recovers', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dflare-durable-'))
    try {
      const child = spawnSync(process.execPath, [FSYNC_FAILS, join(dir, 'data')], {
        encoding: 'utf8',
        timeout: 120_000,
      })
      assert.equal(child.stdout, 'open\n', 'nothing was acknowledged')
      assert.equal(child.status, 1)
      assert.match(child.stderr, /fsync of the embedded database failed \(EIO\); stopping/)
      // The dead process's lock is taken over and PostgreSQL recovers from its WAL.
      const db = await PgliteDb.open(join(dir, 'data'))
      try {
        const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM probe')
        assert.ok(rows[0]!.n <= 1)
      } finally {
        await db.close()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
