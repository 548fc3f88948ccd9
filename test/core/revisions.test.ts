import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { authzMigrations } from '../../src/authz/migrations.ts'
import type { Db } from '../../src/core/db/index.ts'
import { openDb } from '../../src/core/db/index.ts'
import { coreMigrations } from '../../src/core/migrations.ts'
import { Revisions } from '../../src/core/revisions.ts'
import { iamMigrations } from '../../src/iam/migrations.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'
import { copyPgliteTemplate } from '../support/pglite-template.ts'
import { withTempDir } from '../support/temp-dir.ts'
import { until } from '../support/until.ts'

const SOURCES = {
  authz: ['SELECT revision FROM authz.state WHERE singleton', 'authz_revision'],
  iam: ['SELECT revision FROM iam.state WHERE singleton', 'iam_revision'],
} as const

/** `db` with its statements counted (the revision reads among them). */
function counted(db: Db, soleWriter = db.soleWriter) {
  const counter = { reads: 0, listens: 0 }
  const wrapped: Db = {
    engine: db.engine,
    soleWriter,
    holdsReads: db.holdsReads,
    query: (sql, params) => {
      if (String(sql).includes('.state WHERE singleton')) counter.reads++
      return db.query(sql, params)
    },
    transaction: (fn, options) => db.transaction(fn, options),
    listen: (channel, handler) => {
      counter.listens++
      return db.listen(channel, handler)
    },
    notify: (channel, payload) => db.notify(channel, payload),
    close: () => db.close(),
  }
  return { db: wrapped, counter }
}

function revisionsOn(db: Db) {
  const r = new Revisions(db)
  for (const [name, [sql, channel]] of Object.entries(SOURCES)) r.register(name, sql, channel)
  return r
}

async function databaseRevisions(db: Db) {
  const { rows } = await db.query<{ authz: number; iam: number }>(
    `SELECT (SELECT revision FROM authz.state WHERE singleton)::int AS authz,
            (SELECT revision FROM iam.state WHERE singleton)::int AS iam`,
  )
  return rows[0]!
}

const bump = (module: 'authz' | 'iam') =>
  `UPDATE ${module}.state SET revision = revision + 1 WHERE singleton`

describe('revisions on the embedded database (the only writer): known, not read', () => {
  const sets = [coreMigrations, authzMigrations, iamMigrations]

  /** A PGlite database on disk with the modules' migrations, and its Revisions. */
  async function embedded<T>(
    fn: (db: Db, r: Revisions, counter: { reads: number; listens: number }) => Promise<T>,
    { heard = true } = {},
  ) {
    return withTempDir('dflare-revisions-', async (dir) => {
      await copyPgliteTemplate(dir, sets)
      const raw = await openDb({ kind: 'pglite', dataDir: dir })
      try {
        assert.equal(raw.soleWriter, true)
        const { db, counter } = counted(raw)
        const r = revisionsOn(db)
        if (heard) {
          assert.equal(r.known(), undefined, 'not before the first read')
          assert.ok(await until(async () => r.known() !== undefined))
        }
        return await fn(db, r, counter)
      } finally {
        await raw.close()
      }
    })
  }

  it('every committed change is known when its commit returns, without a read', async () => {
    await embedded(async (db, r, counter) => {
      const reads = counter.reads
      await db.transaction(async (tx) => {
        await tx.query(bump('authz'))
        await tx.query(bump('authz'))
      })
      await db.query(bump('iam'))
      assert.deepEqual(Object.fromEntries(r.known()!), await databaseRevisions(db))
      assert.equal(await r.current('authz'), (await databaseRevisions(db)).authz)
      assert.equal(counter.reads, reads + 2, 'only the two checks above read them')
    })
  })

  it('first asked inside a transaction: listening begins all the same, outside it', async () => {
    await embedded(
      async (db, r, counter) => {
        await db.transaction(async () => assert.equal(r.known(), undefined))
        assert.ok(await until(async () => r.known() !== undefined))
        assert.equal(counter.listens, 2, 'one LISTEN per channel, the first time')
      },
      { heard: false },
    )
  })

  it('a change with ordinary triggers switched off is still heard (the trigger fires always)', async () => {
    await embedded(async (db, r) => {
      await db.transaction(async (tx) => {
        await tx.query('SET LOCAL session_replication_role = replica')
        await tx.query(bump('iam'))
      })
      assert.equal(r.known()!.get('iam'), (await databaseRevisions(db)).iam)
    })
  })

  it('anything but a revision on the channel: nothing is known until read again', async () => {
    await embedded(async (db, r, counter) => {
      await db.notify('authz_revision', 'not a revision')
      assert.equal(r.known(), undefined)
      const reads = counter.reads
      assert.ok(await until(async () => r.known() !== undefined))
      assert.equal(counter.reads, reads + 1, 'read once more, then heard again')
      await db.query(bump('authz'))
      assert.equal(r.known()!.get('authz'), (await databaseRevisions(db)).authz)
    })
  })

  it('a revision that goes back is not believed: nothing is known until read again', async () => {
    await embedded(async (db, r) => {
      await db.query(bump('authz'))
      await db.query('UPDATE authz.state SET revision = revision - 1 WHERE singleton')
      assert.equal(r.known(), undefined)
      assert.ok(await until(async () => r.known() !== undefined))
      assert.deepEqual(Object.fromEntries(r.known()!), await databaseRevisions(db))
    })
  })

  it('the row removed: `reset` is announced, and nothing is known until read again', async () => {
    await embedded(async (db, r) => {
      await db.transaction(async (tx) => {
        await tx.query('DELETE FROM authz.state')
        await tx.query('INSERT INTO authz.state (singleton, revision) VALUES (true, 0)')
      })
      assert.equal(r.known(), undefined)
      assert.ok(await until(async () => r.known() !== undefined))
      assert.equal(r.known()!.get('authz'), 0)
    })
  })

  it('property: after any sequence of changes, committed or rolled back, known = the database', async () => {
    await embedded(async (db, r) => {
      const step = fc.record({
        module: fc.constantFrom('authz' as const, 'iam' as const),
        times: fc.integer({ min: 1, max: 3 }),
        commit: fc.boolean(),
        replica: fc.boolean(),
      })
      await fc.assert(
        fc.asyncProperty(fc.array(step, { maxLength: 6 }), async (steps) => {
          for (const s of steps) {
            await db
              .transaction(async (tx) => {
                if (s.replica) await tx.query('SET LOCAL session_replication_role = replica')
                for (let i = 0; i < s.times; i++) await tx.query(bump(s.module))
                if (!s.commit) throw new Error('roll back')
              })
              .catch((err) => assert.equal(err.message, 'roll back'))
            assert.deepEqual(Object.fromEntries(r.known()!), await databaseRevisions(db))
          }
        }),
        { numRuns: 25 },
      )
    })
  })
})

describe('revisions where other processes write (PostgreSQL): always read', () => {
  let t: TestDatabase
  before(async () => {
    t = await migratedDatabase([authzMigrations, iamMigrations])
  })
  after(() => t.close())

  it('never known; every read goes to the database', async () => {
    const { db, counter } = counted(t.db, false)
    const r = revisionsOn(db)
    assert.equal(r.known(), undefined)
    await t.db.query(bump('authz'))
    assert.equal(await r.current('authz'), (await databaseRevisions(t.db)).authz)
    assert.equal(r.known(), undefined)
    assert.equal(counter.reads, 1)
  })

  it('the revision triggers announce every change, also in replica mode', async () => {
    const heard: string[] = []
    const unlisten = await t.db.listen('authz_revision', (p) => heard.push(p))
    try {
      await t.db.transaction(async (tx) => {
        await tx.query('SET LOCAL session_replication_role = replica')
        await tx.query(bump('authz'))
      })
      const { authz } = await databaseRevisions(t.db)
      assert.ok(await until(async () => heard.includes(String(authz))))
    } finally {
      await unlisten()
    }
  })
})
