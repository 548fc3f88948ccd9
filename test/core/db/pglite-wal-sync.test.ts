import assert from 'node:assert/strict'
import fs from 'node:fs'
import { describe, it, type TestContext } from 'node:test'
import { MAX_SYNCS_IN_FLIGHT, WalSync } from '../../../src/core/db/pglite-wal-sync.ts'

/** fs.fsync and fs.fsyncSync replaced: async syncs wait until the test completes them. */
function syncs(t: TestContext) {
  const started: { fd: number; done: (err: NodeJS.ErrnoException | null) => void }[] = []
  t.mock.method(fs, 'fsync', (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => {
    started.push({ fd, done })
  })
  const sync = t.mock.method(fs, 'fsyncSync', () => {})
  const fatal: unknown[] = []
  const wal = new WalSync((err) => {
    fatal.push(err)
    throw err
  })
  return { wal, started, syncedNow: () => sync.mock.calls.map((c) => c.arguments[0]), fatal }
}

const settledYet = async (p: Promise<unknown>) =>
  Promise.race([p.then(() => true), new Promise((r) => setImmediate(() => r(false)))])

describe('WAL syncs off the event loop (WalSync)', () => {
  it('nothing to wait for until a sync is asked; then until the sync in the thread pool is done', async (t) => {
    const { wal, started } = syncs(t)
    assert.equal(wal.durable(), undefined)
    wal.defer(7)
    const durable = wal.durable()!
    assert.equal(started.length, 1)
    assert.equal(started[0]!.fd, 7)
    assert.equal(await settledYet(durable), false, 'not acknowledged before the disk said so')
    started[0]!.done(null)
    assert.equal(await settledYet(durable), true)
    assert.equal(wal.durable(), undefined)
  })

  it('a commit that ends while a sync runs begins its own at once; either acknowledges all before it', async (t) => {
    const { wal, started } = syncs(t)
    wal.defer(7)
    const first = wal.durable()!
    wal.defer(7)
    const second = wal.durable()!
    assert.equal(started.length, 2, 'the second sync did not wait for the first to end')
    // The later sync ends first: it began after both commits' writes, so both are on disk.
    started[1]!.done(null)
    assert.equal(await settledYet(Promise.all([first, second])), true)
    started[0]!.done(null)
    assert.equal(wal.durable(), undefined)
  })

  it('a sync covers the files an earlier one is still syncing (a new WAL segment began meanwhile)', async (t) => {
    const { wal, started } = syncs(t)
    wal.defer(7)
    const first = wal.durable()!
    wal.defer(8)
    const second = wal.durable()!
    assert.equal(started[0]!.fd, 7)
    assert.deepEqual(
      started
        .slice(1)
        .map((s) => s.fd)
        .sort(),
      [7, 8],
      'segment 7 again: its sync in flight may end after this one',
    )
    started[1]!.done(null)
    assert.equal(await settledYet(second), false, 'not before every file of the round is synced')
    started[2]!.done(null)
    assert.equal(await settledYet(Promise.all([first, second])), true)
  })

  it(`past ${MAX_SYNCS_IN_FLIGHT} syncs in flight, commits share the next one (group commit)`, async (t) => {
    const { wal, started } = syncs(t)
    const inFlight = Array.from({ length: MAX_SYNCS_IN_FLIGHT }, () => {
      wal.defer(7)
      return wal.durable()!
    })
    assert.equal(started.length, MAX_SYNCS_IN_FLIGHT)
    // Three more commits: none of the syncs in flight covers them, and there is no room for more.
    const later = [1, 2, 3].map(() => {
      wal.defer(7)
      return wal.durable()!
    })
    assert.equal(started.length, MAX_SYNCS_IN_FLIGHT)
    started[0]!.done(null)
    assert.equal(await settledYet(inFlight[0]!), true)
    assert.equal(await settledYet(Promise.any(later)), false)
    assert.equal(started.length, MAX_SYNCS_IN_FLIGHT + 1, 'one more sync for the three')
    for (const s of started.slice(1)) s.done(null)
    assert.equal(await settledYet(Promise.all([...inFlight, ...later])), true)
    assert.equal(started.length, MAX_SYNCS_IN_FLIGHT + 1)
  })

  it('before another file changes, the WAL noted so far is synced right there (write-ahead)', async (t) => {
    const { wal, started, syncedNow } = syncs(t)
    wal.defer(7)
    const durable = wal.durable()! // 7 in flight
    wal.defer(8)
    assert.equal(wal.settled, false)
    wal.flushNow()
    assert.deepEqual(syncedNow().sort(), [7, 8], 'the one in flight too: it may not have begun')
    assert.equal(wal.settled, true)
    assert.equal(wal.durable(), undefined)
    started[0]!.done(null)
    await durable
    wal.flushNow()
    assert.equal(syncedNow().length, 2, 'nothing left to sync')
  })

  it('a WAL file is synced before it closes; a sync in flight on it may then fail harmlessly', async (t) => {
    const { wal, started, syncedNow, fatal } = syncs(t)
    wal.defer(7)
    wal.beforeClose(7)
    assert.deepEqual(syncedNow(), [7])
    wal.beforeClose(9)
    assert.deepEqual(syncedNow(), [7], 'a file with nothing unsynced is left alone')
    wal.defer(8)
    const durable = wal.durable()!
    wal.beforeClose(8)
    assert.deepEqual(syncedNow(), [7, 8])
    started.at(-1)!.done(Object.assign(new Error('bad file descriptor'), { code: 'EBADF' }))
    await durable
    assert.deepEqual(fatal, [])
  })

  it('a WAL file closed while its sync runs is not synced again by a later sync or a flush (its fd is gone)', async (t) => {
    const { wal, started, syncedNow, fatal } = syncs(t)
    wal.defer(7)
    const first = wal.durable()!
    wal.beforeClose(7)
    assert.deepEqual(syncedNow(), [7])
    wal.defer(8)
    const second = wal.durable()!
    assert.deepEqual(
      started.map((s) => s.fd),
      [7, 8],
    )
    wal.defer(8)
    wal.flushNow()
    assert.deepEqual(syncedNow(), [7, 8], 'the flush syncs 8, not the closed 7')
    started[0]!.done(Object.assign(new Error('bad file descriptor'), { code: 'EBADF' }))
    started[1]!.done(null)
    await Promise.all([first, second])
    assert.deepEqual(fatal, [])
  })

  it('a failed sync stops the process (nothing may be acknowledged after it)', async (t) => {
    const { wal, started, fatal } = syncs(t)
    wal.defer(7)
    const durable = wal.durable()!
    const eio = Object.assign(new Error('input/output error'), { code: 'EIO' })
    assert.throws(() => started[0]!.done(eio), /input\/output error/)
    assert.deepEqual(fatal, [eio])
    assert.equal(await settledYet(durable), false)
  })
})
