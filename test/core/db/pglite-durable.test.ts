import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { PgliteDb } from '../../../src/core/db/pglite.ts'
import { type EmscriptenFs, installHostFsync } from '../../../src/core/db/pglite-durable.ts'
import { WalSync } from '../../../src/core/db/pglite-wal-sync.ts'
import { withDiskDb, withTempDir } from '../../support/temp-dir.ts'
import { until } from '../../support/until.ts'

const FSYNC_FAILS = fileURLToPath(new URL('./fsync-fails.ts', import.meta.url))
const ACKNOWLEDGE = fileURLToPath(new URL('./acknowledge.ts', import.meta.url))

const pathOf = (fd: number) => fs.readlinkSync(`/proc/self/fd/${fd}`)

/**
 * Async syncs (fs.fsync) held until `release()`; synchronous ones (fs.fsyncSync) recorded, in
 * order, by path.
 */
function holdSyncs(t: TestContext) {
  const started: { path: string; go: () => void }[] = []
  const real = fs.fsync
  t.mock.method(fs, 'fsync', (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => {
    started.push({ path: pathOf(fd), go: () => real(fd, done) })
  })
  const realSync = fs.fsyncSync
  const now: string[] = []
  t.mock.method(fs, 'fsyncSync', (fd: number) => {
    now.push(pathOf(fd))
    realSync(fd)
  })
  // Writes of anything but zeros to other files than the WAL, in the same order.
  const realWrite = fs.writeSync as (...a: unknown[]) => number
  t.mock.method(fs, 'writeSync', (...a: unknown[]) => {
    const [fd, data, offset, length] = a as [number, Uint8Array, number, number]
    const path = pathOf(fd)
    if (!/\/pg_wal\//.test(path) && data.subarray(offset, offset + length).some((b) => b !== 0))
      now.push(`write ${path}`)
    return realWrite(...a)
  })
  return {
    started,
    syncedNow: () => [...now],
    release: () => {
      t.mock.restoreAll()
      for (const s of started) s.go()
    },
  }
}

const settledYet = (p: Promise<unknown>) =>
  Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 20))])

describe('embedded database durability (PGlite on disk)', () => {
  it('a write is acknowledged once its WAL is synced, by a sync off the event loop; a read needs none', async (t) => {
    await withDiskDb('dflare-durable-', {}, async (db) => {
      await db.query('CREATE TABLE probe (v int PRIMARY KEY)')
      const held = holdSyncs(t)
      const write = db.transaction(async (tx) => {
        await tx.query('INSERT INTO probe VALUES (1)')
      })
      await until(async () => held.started.length > 0)
      assert.match(held.started[0]!.path, /\/pg_wal\/[0-9A-F]{24}$/, 'the WAL is synced')
      assert.deepEqual(held.syncedNow(), [], 'nothing synchronous on the commit path')
      // A read after the commit saw the unsynced row: it waits for the same sync. So does a
      // failure that tells of it.
      const read = db.query<{ n: number }>('SELECT count(*)::int AS n FROM probe')
      const conflict = db.query('INSERT INTO probe VALUES (1)')
      conflict.catch(() => {})
      assert.equal(await settledYet(write), false, 'not acknowledged before the disk said so')
      assert.equal(await settledYet(read), false)
      assert.equal(await settledYet(conflict.catch(() => {})), false)
      held.release()
      await write
      assert.equal((await read).rows[0]!.n, 1)
      await assert.rejects(conflict, /duplicate key/)
      const again = holdSyncs(t)
      await db.transaction(async (tx) => tx.query('SELECT * FROM probe'), { readOnly: true })
      assert.equal(again.started.length + again.syncedNow().length, 0, 'a read writes no WAL')
      again.release()
    })
  })

  it('a checkpoint syncs the WAL before it writes or syncs any data file (write-ahead)', async (t) => {
    await withDiskDb('dflare-durable-', {}, async (db) => {
      await db.query('CREATE TABLE probe (v int)')
      await db.query('CHECKPOINT')
      const held = holdSyncs(t)
      const write = db.query('INSERT INTO probe SELECT generate_series(1, 1000)')
      await until(async () => held.started.length > 0)
      // The commit's WAL sync is still in flight when the checkpoint writes the table's pages.
      const checkpoint = db.query('CHECKPOINT')
      const isData = (p: string) => !/\/pg_wal\//.test(p)
      await until(async () => held.syncedNow().some(isData))
      const order = held.syncedNow()
      const firstData = order.findIndex(isData)
      assert.ok(firstData > 0, `data files were written: ${order.join(', ')}`)
      assert.ok(
        order.slice(0, firstData).includes(held.started[0]!.path),
        'the WAL in flight was synced first, synchronously',
      )
      held.release()
      await Promise.all([write, checkpoint])
    })
  })

  it("NODEFS's fsync syncs the host's file, or opens and syncs the host's directory", async (t) => {
    await withTempDir('dflare-durable-', async (dir) => {
      const fd = fs.openSync(join(dir, 'file'), 'w')
      try {
        const mod: EmscriptenFs = { NODEFS: { stream_ops: {}, node_ops: {}, realPath: () => dir } }
        installHostFsync(mod)
        const fsync = t.mock.method(fs, 'fsyncSync')
        assert.equal(mod.NODEFS.stream_ops.fsync!({ nfd: fd, node: {} }), 0)
        assert.deepEqual(fsync.mock.calls[0]!.arguments, [fd])
        assert.equal(mod.NODEFS.stream_ops.fsync!({ node: {} }), 0)
        assert.equal(fsync.mock.callCount(), 2, 'the directory was synced through an fd of its own')
        assert.notEqual(fsync.mock.calls[1]!.arguments[0], fd)
      } finally {
        fs.closeSync(fd)
      }
    })
  })

  it('with WAL syncs deferred: a WAL file is noted, anything else syncs the WAL first, zeros need not', async (t) => {
    const calls: string[] = []
    const wal = new WalSync((err) => {
      throw err
    })
    t.mock.method(wal, 'defer', (fd: number) => calls.push(`defer ${fd}`))
    t.mock.method(wal, 'flushNow', () => calls.push('flush'))
    t.mock.method(wal, 'beforeClose', (fd: number) => calls.push(`close ${fd}`))
    Object.defineProperty(wal, 'settled', { get: () => false })
    const sync = t.mock.method(fs, 'fsyncSync', (fd: number) => calls.push(`sync ${fd}`))
    const op = (name: string) => () => calls.push(name)
    const mod: EmscriptenFs = {
      NODEFS: {
        stream_ops: { write: op('write'), close: op('closed'), setattr: op('ftruncate') },
        node_ops: {
          setattr: op('truncate'),
          rename: op('rename'),
          unlink: op('unlink'),
          rmdir: op('rmdir'),
        },
        realPath: (node) => (node as { path: string }).path,
      },
    }
    installHostFsync(mod, wal)
    const ops = mod.NODEFS.stream_ops as Record<string, (...a: unknown[]) => unknown>
    const segment = { nfd: 3, node: { path: '/d/pg_wal/000000010000000000000002' } }
    const table = { nfd: 4, node: { path: '/d/base/5/16384' } }
    const page = new Uint8Array(16)
    page[5] = 1
    const steps: [string, () => unknown][] = [
      ['WAL sync', () => ops.fsync!(segment)],
      ['WAL write', () => ops.write!(segment, page, 0, 16, 0)],
      ['data write', () => ops.write!(table, page, 0, 16, 0)],
      ['zeros', () => ops.write!(table, page, 8, 8, 0)],
      ['data sync', () => ops.fsync!(table)],
      ['WAL close', () => ops.close!(segment)],
      ['ftruncate', () => ops.setattr!(table, {})],
    ]
    const seen: Record<string, string[]> = {}
    for (const [name, step] of steps) {
      calls.length = 0
      step()
      seen[name] = [...calls]
    }
    assert.deepEqual(seen, {
      'WAL sync': ['defer 3'],
      'WAL write': ['write'],
      'data write': ['flush', 'write'],
      zeros: ['write'],
      'data sync': ['flush', 'sync 4'],
      'WAL close': ['close 3', 'closed'],
      ftruncate: ['flush', 'ftruncate'],
    })
    for (const name of ['setattr', 'unlink', 'rmdir'] as const) {
      calls.length = 0
      ;(mod.NODEFS.node_ops[name] as (...a: unknown[]) => unknown)({})
      assert.equal(calls[0], 'flush', name)
    }
    // A new segment is a temporary file renamed: known as WAL under its new name.
    const temp = { nfd: 5, node: { path: '/d/pg_wal/xlogtemp.42' } }
    calls.length = 0
    ops.fsync!(temp)
    assert.deepEqual(calls, ['flush', 'sync 5'])
    ;(mod.NODEFS.node_ops.rename as (...a: unknown[]) => unknown)(temp.node)
    temp.node.path = '/d/pg_wal/000000010000000000000003'
    calls.length = 0
    ops.fsync!(temp)
    assert.deepEqual(calls, ['defer 5'])
    assert.equal(sync.mock.callCount(), 2)
  })

  it('every acknowledged commit is there after the process is killed mid-write, past a WAL segment', async () => {
    await withTempDir('dflare-durable-', async (dir) => {
      const child = spawn(process.execPath, [ACKNOWLEDGE, join(dir, 'data')], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      let out = ''
      child.stdout.setEncoding('utf8')
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (chunk: string) => {
          out += chunk
          if (out.split('\n').length > 10_000) resolve()
        })
        child.once('exit', () => resolve())
      })
      child.kill('SIGKILL')
      await once(child, 'exit')
      const acknowledged = out
        .split('\n')
        .filter((l) => /^\d+$/.test(l))
        .map(Number)
      assert.ok(
        acknowledged.length >= 2000,
        `the writers ran (${acknowledged.length} acknowledged)`,
      )
      const db = await PgliteDb.open(join(dir, 'data'))
      try {
        const { rows } = await db.query<{ id: number }>('SELECT id FROM acked')
        const present = new Set(rows.map((r) => r.id))
        assert.deepEqual(
          acknowledged.filter((id) => !present.has(id)),
          [],
          'no acknowledged row is missing',
        )
      } finally {
        await db.close()
      }
    })
  })

  it('a failed fsync stops the process before the commit is acknowledged; the next start recovers', async () => {
    await withTempDir('dflare-durable-', async (dir) => {
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
    })
  })
})
