import assert from 'node:assert/strict'
import { AsyncLocalStorage } from 'node:async_hooks'
import { spawnSync } from 'node:child_process'
import { after, before, beforeEach, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { HOLD_LIMIT_MS, holdNextRead } from '../../../src/core/db/held-read.ts'
import type { Queryable } from '../../../src/core/db/index.ts'
import { migratedDatabase, type TestDatabase, testEngine } from '../../support/db.ts'

const CLOSE_HELD = fileURLToPath(new URL('./close-held.ts', import.meta.url))

/** A read as the gateway's handlers run it: read-only, as the restricted role, in one tenant. */
const asTenant = { readOnly: true, role: 'dflare_app', settings: { 'dflare.tenant': 'acme' } }

describe('the embedded database holds no read', { skip: testEngine !== 'pglite' }, () => {
  it('the read commits on its own; commitWith answers false and writes nothing', async () => {
    const t = await migratedDatabase()
    try {
      await t.db.query('CREATE TABLE held_probe (v int)')
      const hold = holdNextRead()
      const read = await t.db.transaction(
        async (q) =>
          (await q.query<{ ro: string }>("SELECT current_setting('transaction_read_only') AS ro"))
            .rows[0]!.ro,
        asTenant,
      )
      assert.equal(read, 'on')
      let ran = false
      assert.equal(
        await hold.commitWith(async (tx) => {
          ran = true
          await tx.query('INSERT INTO held_probe VALUES (1)')
        }),
        false,
      )
      assert.equal(ran, false)
      // Nothing holds the one connection: the next statement runs at once.
      const { rows } = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM held_probe')
      assert.equal(rows[0]!.n, 0)
    } finally {
      await t.close()
    }
  })
})

describe('held reads on the server engine', { skip: testEngine !== 'postgres' }, () => {
  let t: TestDatabase
  before(async () => {
    t = await migratedDatabase()
    await t.db.query('CREATE TABLE held_probe (v int, who text)')
    await t.db.query('GRANT SELECT, INSERT ON held_probe TO dflare_app')
  })
  after(() => t.close())
  beforeEach(() => t.db.query('DELETE FROM held_probe'))

  const values = async () =>
    (await t.db.query<{ v: number; who: string }>('SELECT v, who FROM held_probe ORDER BY v')).rows
  const whoAmI = (q: Queryable) =>
    q.query<{ who: string; ro: string }>(
      `SELECT current_user || '/' || coalesce(current_setting('dflare.tenant', true), '') AS who,
              current_setting('transaction_read_only') AS ro`,
    )

  it('hands the read over open; the write runs after it as the connecting user, and both commit', async () => {
    const hold = holdNextRead()
    const read = await t.db.transaction(async (q) => (await whoAmI(q)).rows[0]!, asTenant)
    assert.deepEqual(read, { who: 'dflare_app/acme', ro: 'on' })
    const me = (await t.db.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u
    // That query released the read: hold again, and this time write with it.
    const again = holdNextRead()
    await t.db.transaction((q) => whoAmI(q), asTenant)
    let inside: { who: string; ro: string } | undefined
    const committed = await again.commitWith(async (tx) => {
      inside = (await whoAmI(tx)).rows[0]
      tx.query(`INSERT INTO held_probe VALUES (1, $1)`, [me]) // not awaited: COMMIT follows it
    })
    assert.equal(committed, true)
    assert.deepEqual(inside, { who: `${me}/`, ro: 'off' })
    assert.deepEqual(await values(), [{ v: 1, who: me }])
    assert.equal(await hold.commitWith(async () => {}), false)
  })

  it('closing the database ends a held read whose holder never comes back, writing nothing', async () => {
    const own = await migratedDatabase()
    try {
      const hold = holdNextRead()
      assert.deepEqual((await own.db.transaction((q) => whoAmI(q), asTenant)).rows[0], {
        who: 'dflare_app/acme',
        ro: 'on',
      })
      await own.db.close()
      assert.equal(await hold.commitWith(async () => {}), false, 'nothing left to commit')
    } finally {
      await own.close() // closing twice is harmless
    }
    // The same with nothing else keeping the process alive: close() must not wait for the holder.
    const child = spawnSync(process.execPath, [CLOSE_HELD], { encoding: 'utf8', timeout: 120_000 })
    assert.equal(child.stdout, 'closed\n', child.stderr)
    assert.equal(child.status, 0)
  })

  it('the read cannot write, nor leave its read-only section', async () => {
    for (const sql of [
      "INSERT INTO held_probe VALUES (2, 'read')",
      'SET TRANSACTION READ WRITE',
      'RELEASE SAVEPOINT dflare_read_00000000000000000000000000000000',
      "SELECT set_config('transaction_read_only', 'off', true)",
    ]) {
      const hold = holdNextRead()
      await assert.rejects(
        t.db.transaction((q) => q.query(sql), asTenant),
        /read-only|savepoint|read-write/i,
        sql,
      )
      // A failed read is not held (nothing to commit with).
      assert.equal(await hold.commitWith(async () => {}), false)
    }
    assert.deepEqual(await values(), [])
  })

  it('a failing write commits nothing, and the database stays usable', async () => {
    const hold = holdNextRead()
    await t.db.transaction((q) => whoAmI(q), asTenant)
    await assert.rejects(
      hold.commitWith(async (tx) => {
        tx.query("INSERT INTO held_probe VALUES (3, 'lost')")
        tx.query('SELECT 1 / 0')
      }),
      /division by zero/,
    )
    assert.deepEqual(await values(), [])
    assert.equal((await t.db.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1)
  })

  it('holds only the first transaction of the context, and only a read-only one', async () => {
    const hold = holdNextRead()
    await t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO held_probe VALUES (4, 'write')")
    })
    await t.db.transaction((q) => whoAmI(q), asTenant)
    assert.equal(await hold.commitWith(async () => {}), false)
    assert.deepEqual(await values(), [{ v: 4, who: 'write' }])
  })

  it('any other use of the database in the context releases the read first (no self-deadlock)', async () => {
    const hold = holdNextRead()
    await t.db.transaction((q) => whoAmI(q), asTenant)
    await t.db.transaction(async (tx) => {
      await tx.query("INSERT INTO held_probe VALUES (5, 'after')")
    })
    assert.equal(await hold.commitWith(async () => {}), false)
    assert.deepEqual(await values(), [{ v: 5, who: 'after' }])
  })

  it('a read held too long is released: another context waiting for the database goes on', async () => {
    const elsewhere = AsyncLocalStorage.snapshot() // a context that holds nothing
    const hold = holdNextRead()
    await t.db.transaction((q) => whoAmI(q), asTenant)
    const other = elsewhere(() => t.db.query<{ n: number }>('SELECT 2 AS n'))
    assert.equal((await other).rows[0]!.n, 2)
    await sleep(HOLD_LIMIT_MS + 20)
    assert.equal(await hold.commitWith(async () => {}), false)
  })

  it('release() ends the read with nothing written', async () => {
    const hold = holdNextRead()
    await t.db.transaction((q) => whoAmI(q), asTenant)
    await hold.release()
    await hold.release() // harmless twice
    assert.equal(await hold.commitWith(async () => {}), false)
  })
})
