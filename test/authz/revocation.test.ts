import assert from 'node:assert/strict'
import { test } from 'node:test'
import { authzMigrations } from '../../src/authz/migrations.ts'
import { createAuthzService } from '../../src/authz/service.ts'
import { removeRoleBinding } from '../../src/authz/writer.ts'
import { ManualClock } from '../../src/core/clock.ts'
import { type Db, openDb, type SqlValue } from '../../src/core/db/index.ts'
import { migratedDatabase, testEngine } from '../support/db.ts'
import { START, seed } from './fixture.ts'

const viewerBinding = {
  tenant: 't1',
  principal: { type: 'User' as const, id: 'viewer' },
  role: 'viewer' as const,
  scope: { type: 'Project' as const, id: 'p1' },
}
const readC1 = {
  principal: { type: 'Dflare::User', id: 'viewer' },
  action: { type: 'Dflare::Action', id: 'cluster.read' },
  resource: { type: 'Dflare::Cluster', id: 'c1' },
  context: {},
}

/** Two handles on one database: another process on PostgreSQL, the same engine on PGlite. */
async function twoHandles() {
  const t = await migratedDatabase([authzMigrations])
  await seed(t.db)
  const other: Db = t.url ? await openDb({ kind: 'postgres', url: t.url }) : t.db
  return {
    writerDb: t.db,
    readerDb: other,
    async close() {
      try {
        if (other !== t.db) await other.close()
      } finally {
        await t.close()
      }
    },
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms = 5000) {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached')
    await new Promise((r) => setTimeout(r, 10))
  }
}

test('strong consistency: no allow after the removing transaction committed', async () => {
  const h = await twoHandles()
  const reader = createAuthzService({ db: h.readerDb, clock: new ManualClock(START) })
  await reader.start()
  try {
    for (let i = 0; i < 3; i++) assert.equal((await reader.pdp.decide(readC1)).decision, 'allow')
    assert.ok(reader.cache.size > 0, 'the decision was served from a warm cache')
    await h.writerDb.transaction((tx) => removeRoleBinding(tx, viewerBinding))
    // No waiting: the very next decision must already deny.
    const d = await reader.pdp.decide(readC1)
    assert.equal(d.decision, 'deny', d.reason)
  } finally {
    await reader.stop()
    await h.close()
  }
})

test('strong consistency under concurrency: decisions share revision reads, none allows after the removal', async () => {
  const h = await twoHandles()
  // Notifications reach this reader late, so only its revision reads can make it deny in time;
  // revision reads answer late too, so a read in flight at the commit predates it.
  const db = h.readerDb
  const slow: Db = {
    engine: db.engine,
    // Its notifications arrive late: what it heard is not the database's state.
    soleWriter: false,
    holdsReads: db.holdsReads,
    async query<R>(sql: string, params?: readonly SqlValue[]) {
      const r = await db.query<R>(sql, params)
      if (sql.includes('revision')) await new Promise((res) => setTimeout(res, 30))
      return r
    },
    transaction: (fn, options) => db.transaction(fn, options),
    notify: (channel, payload) => db.notify(channel, payload),
    close: () => db.close(),
    listen: (channel, handler) => db.listen(channel, (p) => setTimeout(() => handler(p), 100)),
  }
  const reader = createAuthzService({ db: slow, clock: new ManualClock(START) })
  await reader.start()
  try {
    assert.equal((await reader.pdp.decide(readC1)).decision, 'allow')
    // Decisions keep starting while the binding is removed on the other handle; every decision
    // that starts after the removal committed must deny, however the reads were shared.
    let committed = false
    const late: Promise<string>[] = []
    let stop = false
    const load = (async () => {
      while (!stop) {
        const startedAfterCommit = committed
        const d = reader.pdp.decide(readC1).then((r) => r.decision)
        if (startedAfterCommit) late.push(d)
        await new Promise((r) => setImmediate(r))
      }
    })()
    const burst = Array.from({ length: 20 }, () => reader.pdp.decide(readC1))
    await h.writerDb.transaction((tx) => removeRoleBinding(tx, viewerBinding))
    committed = true
    const after = Array.from({ length: 20 }, () => reader.pdp.decide(readC1))
    await new Promise((r) => setTimeout(r, 50))
    stop = true
    await load
    await Promise.all(burst)
    const decisions = [
      ...(await Promise.all(after)).map((d) => d.decision),
      ...(await Promise.all(late)),
    ]
    assert.ok(decisions.length >= 20)
    assert.deepEqual([...new Set(decisions)], ['deny'])
  } finally {
    await reader.stop()
    await h.close()
  }
})

test('notify consistency: the change notification invalidates the cache', async () => {
  const h = await twoHandles()
  const reader = createAuthzService({
    db: h.readerDb,
    clock: new ManualClock(START),
    consistency: 'notify',
  })
  await reader.start()
  try {
    assert.equal((await reader.pdp.decide(readC1)).decision, 'allow')
    await h.writerDb.transaction((tx) => removeRoleBinding(tx, viewerBinding))
    await until(async () => (await reader.pdp.decide(readC1)).decision === 'deny')
  } finally {
    await reader.stop()
    await h.close()
  }
})

test('a rolled-back removal changes nothing (the notification is transactional)', async () => {
  const h = await twoHandles()
  const reader = createAuthzService({ db: h.readerDb, clock: new ManualClock(START) })
  await reader.start()
  try {
    assert.equal((await reader.pdp.decide(readC1)).decision, 'allow')
    await assert.rejects(
      h.writerDb.transaction(async (tx) => {
        await removeRoleBinding(tx, viewerBinding)
        throw new Error('abort')
      }),
    )
    assert.equal((await reader.pdp.decide(readC1)).decision, 'allow')
  } finally {
    await reader.stop()
    await h.close()
  }
})

test('lost listener: cache dropped, decisions read the database (no stale allow)', {
  skip: testEngine !== 'postgres',
}, async () => {
  const h = await twoHandles()
  const reader = createAuthzService({
    db: h.readerDb,
    clock: new ManualClock(START),
    consistency: 'notify',
  })
  await reader.start()
  try {
    assert.equal((await reader.pdp.decide(readC1)).decision, 'allow')
    // Kill the reader's LISTEN connection from the other handle.
    await h.writerDb.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`,
    )
    await until(() => !reader.cache.listening)
    assert.equal(reader.cache.size, 0)
    await h.writerDb.transaction((tx) => removeRoleBinding(tx, viewerBinding))
    assert.equal((await reader.pdp.decide(readC1)).decision, 'deny')
    await until(() => reader.cache.listening)
  } finally {
    await reader.stop()
    await h.close()
  }
})

test('entity store outage: decisions deny with a reason', async () => {
  const h = await twoHandles()
  const reader = createAuthzService({ db: h.readerDb, clock: new ManualClock(START) })
  await reader.start()
  await reader.stop()
  if (h.readerDb !== h.writerDb) await h.readerDb.close()
  else await h.writerDb.query('DROP SCHEMA authz CASCADE')
  const d = await reader.pdp.decide(readC1)
  assert.equal(d.decision, 'deny')
  assert.match(d.reason, /unavailable|failed/)
  if (h.readerDb !== h.writerDb) await h.writerDb.close().catch(() => {})
  await h.close().catch(() => {})
})
