import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startIntegration } from '../../src/audit/append.ts'
import { AuditSequencer } from '../../src/audit/sequencer.ts'
import { AuditSink } from '../../src/audit/sink.ts'
import { verifyDatabase } from '../../src/audit/tools.ts'
import type { Db } from '../../src/core/db/index.ts'
import { openDb } from '../../src/core/db/index.ts'
import { type AuditFixture, auditFixture, event } from './helpers.ts'

function sequencer(db: Db, batch = 50) {
  return new AuditSequencer({ db, batch, delayMs: 0, pollMs: 1000, onError: () => {} })
}

/** `db` with every statement of its transactions written down (their SQL, in order). */
function recording(db: Db): { db: Db; statements: string[] } {
  const statements: string[] = []
  return {
    statements,
    db: {
      engine: db.engine,
      soleWriter: db.soleWriter,
      holdsReads: db.holdsReads,
      query: (sql, params) => db.query(sql, params),
      listen: (channel, handler) => db.listen(channel, handler),
      notify: (channel, payload) => db.notify(channel, payload),
      close: () => db.close(),
      transaction: (fn, options) =>
        db.transaction(
          (tx) =>
            fn({
              query: (sql, params) => {
                statements.push(typeof sql === 'string' ? sql : sql.text)
                return tx.query(sql, params)
              },
              exec: (sql) => tx.exec(sql),
            }),
          options,
        ),
    },
  }
}

async function queued(db: Db, log: string) {
  const { rows } = await db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM audit.queue WHERE log = $1',
    [log],
  )
  return rows[0]!.n
}

async function integrated(db: Db, log: string) {
  const { rows } = await db.query<{ correlation_id: string }>(
    'SELECT correlation_id FROM audit.events WHERE log = $1 ORDER BY idx',
    [log],
  )
  return rows.map((r) => r.correlation_id)
}

describe('audit sequencer: queue → Merkle log', () => {
  let f: AuditFixture
  before(async () => {
    f = await auditFixture()
  })
  after(() => f.close())

  it('an event is durable in the queue first, then integrated exactly once', async () => {
    // A caller transaction that rolls back leaves nothing queued, so nothing is ever integrated.
    await assert.rejects(
      f.db.transaction(async (tx) => {
        await f.audit.sink.record(event(1, { tenant: 'seq-once', correlationId: 'lost' }), tx)
        throw new Error('the state change failed')
      }),
    )
    await f.db.transaction((tx) =>
      f.audit.sink.record(event(2, { tenant: 'seq-once', correlationId: 'kept' }), tx),
    )
    await f.audit.sequencer.drain()
    await f.audit.sequencer.drain()
    assert.deepEqual(await integrated(f.db, 'seq-once'), ['kept'])
    assert.equal(await queued(f.db, 'seq-once'), 0)
  })

  it('integrates in the background, even when kicked from inside a caller transaction', async () => {
    const errors: unknown[] = []
    const background = new AuditSequencer({
      db: f.db,
      batch: 100,
      delayMs: 5,
      pollMs: 1000,
      onError: (err) => errors.push(err),
    })
    const sink = new AuditSink({
      db: f.db,
      clock: f.clock,
      pseudonymizer: f.audit.pseudonymizer,
      maxBatch: 100,
      onQueued: () => background.kick(),
    })
    await f.db.transaction((tx) =>
      sink.record(event(1, { tenant: 'seq-bg', correlationId: 'in-tx' }), tx),
    )
    await sink.record(event(2, { tenant: 'seq-bg', correlationId: 'group' }))
    const deadline = Date.now() + 5000
    while ((await integrated(f.db, 'seq-bg')).length < 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20))
    await background.stop()
    assert.deepEqual(errors, [])
    assert.deepEqual(await integrated(f.db, 'seq-bg'), ['in-tx', 'group'])
  })

  it('a failed integration leaves every event queued; the next one integrates them in order', async () => {
    // No background integration from here on (kicks of earlier tests included); queued by a
    // sink that does not wake the fixture's sequencer.
    await f.audit.sequencer.stop()
    const quiet = new AuditSink({
      db: f.db,
      clock: f.clock,
      pseudonymizer: f.audit.pseudonymizer,
      maxBatch: 100,
    })
    const ids = Array.from({ length: 120 }, (_, i) => `fail-${i}`)
    for (const [i, id] of ids.entries())
      await f.db.transaction((tx) =>
        quiet.record(event(i, { tenant: 'seq-fail', correlationId: id }), tx),
      )
    // A process that dies after moving the events, before COMMIT: nothing of it survives.
    const crashing: Db = {
      engine: f.db.engine,
      soleWriter: f.db.soleWriter,
      holdsReads: f.db.holdsReads,
      query: (sql, params) => f.db.query(sql, params),
      listen: (channel, handler) => f.db.listen(channel, handler),
      notify: (channel, payload) => f.db.notify(channel, payload),
      close: () => f.db.close(),
      transaction: (fn, options) =>
        f.db.transaction(async (tx) => {
          await fn(tx)
          throw new Error('crashed before COMMIT')
        }, options),
    }
    await assert.rejects(sequencer(crashing).drain(), /crashed before COMMIT/)
    assert.equal(await queued(f.db, 'seq-fail'), 120)
    assert.deepEqual(await integrated(f.db, 'seq-fail'), [])
    // Verification says what it could not cover yet.
    assert.equal((await verifyDatabase(f.db, { logs: ['seq-fail'] })).queued, 120)
    await sequencer(f.db, 50).drain() // three transactions: 50 + 50 + 20
    assert.equal(await queued(f.db, 'seq-fail'), 0)
    assert.deepEqual(await integrated(f.db, 'seq-fail'), ids)
    const report = await verifyDatabase(f.db, { logs: ['seq-fail'] })
    assert.ok(report.ok, JSON.stringify(report))
    assert.equal(report.queued, 0)
  })

  it("a log's first events and another log's: one transaction integrates them, in queue order", async () => {
    await f.db.transaction((tx) =>
      f.audit.sink.record(event(1, { tenant: 'seq-old', correlationId: 'old-1' }), tx),
    )
    await sequencer(f.db).drain()
    // Interleaved: a log that has a head and one that has none yet.
    for (const [i, tenant] of ['seq-new', 'seq-old', 'seq-new', 'seq-old'].entries())
      await f.db.transaction((tx) =>
        f.audit.sink.record(event(i, { tenant, correlationId: `${tenant}-${i}` }), tx),
      )
    const { rows: before } = await f.db.query(`SELECT 1 FROM audit.heads WHERE log = 'seq-new'`)
    assert.equal(before.length, 0)
    assert.equal(await sequencer(f.db).integrate(), 4, 'all four in one integration')
    assert.deepEqual(await integrated(f.db, 'seq-new'), ['seq-new-0', 'seq-new-2'])
    assert.deepEqual(await integrated(f.db, 'seq-old'), ['old-1', 'seq-old-1', 'seq-old-3'])
    const report = await verifyDatabase(f.db, { logs: ['seq-new', 'seq-old'] })
    assert.ok(report.ok, JSON.stringify(report))
  })

  it('an integration whose queue row is gone fails whole instead of leaving a hole in the tree', async () => {
    await f.audit.sink.record(event(1, { tenant: 'holes' }))
    const { rows } = await f.db.query<{ id: number; leaf: Buffer }>(
      `SELECT id, sha256('\\x00'::bytea || convert_to(body, 'UTF8')) AS leaf
       FROM audit.queue WHERE log = 'holes'`,
    )
    const [row] = rows
    const batch = new Map([
      [
        'holes',
        [
          { id: row!.id, hash: row!.leaf },
          { id: -1, hash: Buffer.alloc(32) }, // a queue row that does not exist
        ],
      ],
    ])
    await assert.rejects(
      f.db.transaction(
        async (tx) => {
          const { written } = await startIntegration(tx, batch)
          await written
        },
        { role: 'dflare_audit_sequencer' },
      ),
      /null value in column "size"/,
    )
    assert.equal(await queued(f.db, 'holes'), 1)
    assert.deepEqual(await integrated(f.db, 'holes'), [])
    await sequencer(f.db).drain()
    assert.equal(await queued(f.db, 'holes'), 0)
    assert.equal((await integrated(f.db, 'holes')).length, 1)
  })

  it('on the sole writer, a log it wrote last is integrated without reading or locking its head', async () => {
    await f.audit.sequencer.stop() // no background integration: this test integrates itself
    const { db, statements } = recording(f.db)
    const mine = sequencer(db)
    for (const round of [1, 2, 3]) {
      await f.audit.sink.record(
        event(round, { tenant: 'seq-known', correlationId: `known-${round}` }),
      )
      statements.length = 0
      assert.equal(await mine.integrate(), 1)
      const locked = statements.some((sql) => /FOR UPDATE|pg_advisory_xact_lock/.test(sql))
      // The first integration reads the head; later ones know it, on the engine that is the
      // database's only writer. PostgreSQL, shared with other processes, always locks.
      assert.equal(locked, round === 1 || !f.db.soleWriter, `round ${round}: ${statements}`)
    }
    assert.deepEqual(await integrated(f.db, 'seq-known'), ['known-1', 'known-2', 'known-3'])
    const report = await verifyDatabase(f.db, { logs: ['seq-known'] })
    assert.ok(report.ok, JSON.stringify(report))
  })

  it('keeps only so many heads known, the most recently written', async () => {
    await f.audit.sequencer.stop() // no background integration: this test integrates itself
    const { db, statements } = recording(f.db)
    const mine = new AuditSequencer({
      db,
      batch: 50,
      delayMs: 0,
      pollMs: 1000,
      onError: () => {},
      knownHeads: 2,
    })
    const grow = async (log: string) => {
      await f.audit.sink.record(event(1, { tenant: log }))
      statements.length = 0
      assert.equal(await mine.integrate(), 1)
      return statements.some((sql) => /FOR UPDATE/.test(sql))
    }
    for (const log of ['lru-a', 'lru-b', 'lru-c']) assert.equal(await grow(log), true)
    // a was written first: forgotten when c came; b and c are still known.
    assert.equal(await grow('lru-c'), !f.db.soleWriter)
    assert.equal(await grow('lru-b'), !f.db.soleWriter)
    assert.equal(await grow('lru-a'), true)
    const report = await verifyDatabase(f.db, { logs: ['lru-a', 'lru-b', 'lru-c'] })
    assert.ok(report.ok, JSON.stringify(report))
  })

  it('a head moved behind its back fails the write whole; the integration is redone from the database', async () => {
    await f.audit.sequencer.stop() // no background integration: this test integrates itself
    const mine = sequencer(f.db)
    await f.audit.sink.record(event(1, { tenant: 'seq-moved', correlationId: 'moved-1' }))
    assert.equal(await mine.integrate(), 1) // now knows the head at size 1
    // Another sequencer (of this process) moves the head to 2.
    await f.audit.sink.record(event(2, { tenant: 'seq-moved', correlationId: 'moved-2' }))
    assert.equal(await sequencer(f.db).integrate(), 1)
    // A write planned from any other size than the head's is refused by the database itself:
    // from behind, its indexes are taken; from ahead, the head's size check fails it.
    await f.audit.sink.record(event(3, { tenant: 'seq-moved', correlationId: 'moved-3' }))
    const { rows } = await f.db.query<{ id: number }>(
      `SELECT id FROM audit.queue WHERE log = 'seq-moved'`,
    )
    const batch = new Map([['seq-moved', [{ id: rows[0]!.id, hash: Buffer.alloc(32) }]]])
    const behind = { log: 'seq-moved', size: 1, frontier: Buffer.alloc(32) }
    const ahead = { log: 'seq-moved', size: 5, frontier: Buffer.alloc(64) }
    for (const [stale, refusal] of [
      [behind, /duplicate key value/],
      [ahead, /null value in column "size"/],
    ] as const)
      await assert.rejects(
        f.db.transaction(
          async (tx) => {
            await (await startIntegration(tx, batch, [stale])).written
          },
          { role: 'dflare_audit_sequencer' },
        ),
        refusal,
      )
    assert.equal(await queued(f.db, 'seq-moved'), 1)
    // The first sequencer, whose head is stale too, still integrates, from the head as it is.
    assert.equal(await mine.integrate(), 1)
    assert.deepEqual(await integrated(f.db, 'seq-moved'), ['moved-1', 'moved-2', 'moved-3'])
    const report = await verifyDatabase(f.db, { logs: ['seq-moved'] })
    assert.ok(report.ok, JSON.stringify(report))
  })

  it('a known head whose row is gone fails the write whole, and the log is not forked', async () => {
    await f.audit.sequencer.stop()
    const mine = sequencer(f.db)
    await f.audit.sink.record(event(1, { tenant: 'seq-gone', correlationId: 'gone-1' }))
    assert.equal(await mine.integrate(), 1)
    // Only an owner bypassing the triggers can remove a head; the sequencer still knows it.
    const [head] = (
      await f.db.query<{ size: number; frontier: Buffer; root: Buffer }>(
        `SELECT size, frontier, root FROM audit.heads WHERE log = 'seq-gone'`,
      )
    ).rows
    const asOwner = (sql: string, params: unknown[] = []) =>
      f.db.transaction(async (tx) => {
        await tx.query('SET LOCAL session_replication_role = replica')
        await tx.query(sql, params as never)
      })
    await asOwner(`DELETE FROM audit.heads WHERE log = 'seq-gone'`)
    await f.audit.sink.record(event(2, { tenant: 'seq-gone', correlationId: 'gone-2' }))
    // Neither from the known head (its row is gone) nor from a new one (index 0 is taken).
    await assert.rejects(mine.integrate(), /duplicate key value/)
    assert.equal(await queued(f.db, 'seq-gone'), 1)
    assert.deepEqual(await integrated(f.db, 'seq-gone'), ['gone-1'])
    // The head restored, the log goes on where it was.
    await asOwner(
      `INSERT INTO audit.heads (log, size, frontier, root) VALUES ('seq-gone', $1, $2, $3)`,
      [head!.size, head!.frontier, head!.root],
    )
    assert.equal(await mine.integrate(), 1)
    assert.deepEqual(await integrated(f.db, 'seq-gone'), ['gone-1', 'gone-2'])
    const report = await verifyDatabase(f.db, { logs: ['seq-gone'] })
    assert.ok(report.ok, JSON.stringify(report))
  })

  it('only the sequencer role may take events off the queue', async () => {
    await assert.rejects(
      f.db.transaction((tx) => tx.query('DELETE FROM audit.queue'), {
        role: 'dflare_audit_writer',
      }),
      /permission denied/,
    )
    await assert.rejects(
      f.db.transaction(
        (tx) => tx.query("UPDATE audit.heads SET size = size + 1 WHERE log = 'seq-fail'"),
        { role: 'dflare_app' },
      ),
      /permission denied/,
    )
  })
})

describe('audit sequencer across processes', {
  skip: !process.env.DFLARE_TEST_DATABASE_URL && 'needs DFLARE_TEST_DATABASE_URL',
}, () => {
  let f: AuditFixture
  let other: Db
  before(async () => {
    f = await auditFixture()
    other = await openDb({ kind: 'postgres', url: f.t.url! })
  })
  after(async () => {
    await other.close()
    await f.close()
  })

  it('sequencers of two processes racing keep every log gapless and verifiable', async () => {
    const logs = ['race-a', 'race-b', 'race-c']
    const writes = Array.from({ length: 600 }, (_, i) => {
      const e = event(i, { tenant: logs[i % 3]!, correlationId: `race-${i}` })
      return i % 2
        ? f.audit.sink.record(e)
        : f.db.transaction((tx) => f.audit.sink.record(e, tx), { role: 'dflare_app' })
    })
    const mine = sequencer(f.db, 7)
    const theirs = sequencer(other, 11)
    const racing = Array.from({ length: 20 }, (_, i) => (i % 2 ? mine : theirs).drain())
    await Promise.all([...writes, ...racing])
    await Promise.all([mine.drain(), theirs.drain()])
    for (const log of logs) {
      assert.equal(await queued(f.db, log), 0)
      const ids = await integrated(f.db, log)
      assert.equal(ids.length, 200)
      assert.equal(new Set(ids).size, 200)
    }
    const report = await verifyDatabase(f.db, { logs })
    assert.ok(report.ok, JSON.stringify(report))
  })
})
