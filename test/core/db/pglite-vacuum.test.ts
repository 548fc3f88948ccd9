import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import type { PgliteDb } from '../../../src/core/db/pglite.ts'
import {
  type AutovacuumSettings,
  maintenanceDue,
  maintenanceStatement,
  type TableActivity,
  vacuumWhatIsDue,
} from '../../../src/core/db/pglite-vacuum.ts'
import { withDiskDb, withTempDir } from '../../support/temp-dir.ts'
import { until } from '../../support/until.ts'

const IDLE_EXIT = fileURLToPath(new URL('./idle-exit.ts', import.meta.url))

/** PostgreSQL 15's defaults. */
const DEFAULTS: AutovacuumSettings = {
  vacuumThreshold: 50,
  vacuumScaleFactor: 0.2,
  insertThreshold: 1000,
  insertScaleFactor: 0.2,
  analyzeThreshold: 50,
  analyzeScaleFactor: 0.1,
  freezeMaxAge: 200_000_000,
}

const quiet: TableActivity = {
  name: 'public.t',
  reltuples: 0,
  deadRows: 0,
  insertedSinceVacuum: 0,
  changedSinceAnalyze: 0,
  xidAge: 100,
}

const withDb = (intervalMs: number, fn: (db: PgliteDb) => Promise<void>) =>
  withDiskDb('dflare-vacuum-', { vacuum: { intervalMs } }, fn)

const stats = async (db: PgliteDb, table: string) =>
  (
    await db.query<{ vacuums: number; analyzes: number; bytes: number }>(
      `SELECT vacuum_count::int AS vacuums, analyze_count::int AS analyzes,
         pg_relation_size(relid)::int AS bytes
       FROM pg_stat_all_tables WHERE relid = $1::regclass`,
      [table],
    )
  ).rows[0]!

describe('core/db/pglite-vacuum: the embedded database vacuums and analyzes itself', () => {
  it("applies autovacuum's thresholds: dead rows, inserts, changes and transaction id age", () => {
    assert.deepEqual(maintenanceDue(DEFAULTS, quiet), { vacuum: false, analyze: false })
    // 1,000 rows: vacuum past 50 + 200 dead rows, analyze past 50 + 100 changed rows.
    const t = { ...quiet, reltuples: 1000 }
    assert.equal(maintenanceDue(DEFAULTS, { ...t, deadRows: 250 }).vacuum, false)
    assert.equal(maintenanceDue(DEFAULTS, { ...t, deadRows: 251 }).vacuum, true)
    assert.equal(maintenanceDue(DEFAULTS, { ...t, insertedSinceVacuum: 1201 }).vacuum, true)
    assert.equal(maintenanceDue(DEFAULTS, { ...t, changedSinceAnalyze: 150 }).analyze, false)
    assert.equal(maintenanceDue(DEFAULTS, { ...t, changedSinceAnalyze: 151 }).analyze, true)
    assert.equal(maintenanceDue(DEFAULTS, { ...t, xidAge: 200_000_001 }).vacuum, true)
    // A table never vacuumed nor analyzed (reltuples -1) counts as empty.
    assert.equal(maintenanceDue(DEFAULTS, { ...quiet, reltuples: -1, deadRows: 51 }).vacuum, true)
    // An insert threshold of -1 turns insert-driven vacuums off, as on the server.
    const noInserts = { ...DEFAULTS, insertThreshold: -1 }
    assert.equal(maintenanceDue(noInserts, { ...t, insertedSinceVacuum: 1e9 }).vacuum, false)
  })

  it('more activity never makes a due table not due (property)', () => {
    const activity = fc.record({
      name: fc.constant('public.t'),
      reltuples: fc.integer({ min: -1, max: 1_000_000 }),
      deadRows: fc.nat(1_000_000),
      insertedSinceVacuum: fc.nat(1_000_000),
      changedSinceAnalyze: fc.nat(1_000_000),
      xidAge: fc.nat(300_000_000),
    })
    fc.assert(
      fc.property(activity, fc.nat(1000), (t, more) => {
        const before = maintenanceDue(DEFAULTS, t)
        const after = maintenanceDue(DEFAULTS, {
          ...t,
          deadRows: t.deadRows + more,
          insertedSinceVacuum: t.insertedSinceVacuum + more,
          changedSinceAnalyze: t.changedSinceAnalyze + more,
          xidAge: t.xidAge + more,
        })
        assert.ok(!before.vacuum || after.vacuum)
        assert.ok(!before.analyze || after.analyze)
      }),
    )
  })

  it('writes the statement for what is due, with the name as given', () => {
    const name = '"odd ""schema"""."t"'
    assert.equal(maintenanceStatement(name, { vacuum: false, analyze: false }), undefined)
    assert.equal(maintenanceStatement(name, { vacuum: true, analyze: false }), `VACUUM ${name}`)
    assert.equal(maintenanceStatement(name, { vacuum: false, analyze: true }), `ANALYZE ${name}`)
    assert.equal(
      maintenanceStatement(name, { vacuum: true, analyze: true }),
      `VACUUM (ANALYZE) ${name}`,
    )
  })

  it('a table that takes and removes rows is vacuumed on its own, and stops growing', async () => {
    await withDb(100, async (db) => {
      await db.query('CREATE TABLE churn (id bigserial PRIMARY KEY, body text)')
      const round = async () => {
        await db.query(
          "INSERT INTO churn (body) SELECT repeat('x', 800) FROM generate_series(1, 500)",
        )
        await db.query('DELETE FROM churn')
      }
      await round()
      assert.ok(
        await until(async () => (await stats(db, 'churn')).vacuums > 0),
        'the churned table was never vacuumed',
      )
      // Run as simple statements: none is kept among the prepared statements of the requests.
      const kept = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_prepared_statements
         WHERE statement ~* '^(VACUUM|ANALYZE|CHECKPOINT)'`,
      )
      assert.equal(kept.rows[0]!.n, 0)
      const after = (await stats(db, 'churn')).bytes
      // Freed space is reused: more rounds of the same size do not grow the table again.
      for (let i = 0; i < 5; i++) {
        const vacuums = (await stats(db, 'churn')).vacuums
        await round()
        await until(async () => (await stats(db, 'churn')).vacuums > vacuums)
      }
      const bytes = (await stats(db, 'churn')).bytes
      assert.ok(
        bytes <= Math.max(after, 8192) * 2,
        `${bytes} bytes after six rounds, ${after} after one`,
      )
    })
  })

  it('a table that only grows is vacuumed and analyzed, and then not due again', async () => {
    await withDb(3_600_000, async (db) => {
      await db.query('CREATE TABLE grows (id int)')
      await db.query('INSERT INTO grows SELECT g FROM generate_series(1, 2000) g')
      const run = (sql: string) => db.query<Record<string, unknown>>(sql)
      let done: string[] = []
      // Statistics reach the views within about a second of the write.
      assert.ok(
        await until(async () => {
          done = await vacuumWhatIsDue(run)
          return done.some((s) => s.endsWith('public.grows'))
        }),
        'never found due',
      )
      assert.ok(done.includes('VACUUM (ANALYZE) public.grows'), done.join('; '))
      assert.equal((await stats(db, 'grows')).analyzes, 1)
      assert.deepEqual(
        (await vacuumWhatIsDue(run)).filter((s) => s.endsWith('public.grows')),
        [],
        'nothing left to do for it',
      )
    })
  })

  it('leaves a quiet database alone, so that it never keeps the process alive', async () => {
    await withTempDir('dflare-vacuum-', async (dir) => {
      const child = spawnSync(process.execPath, [IDLE_EXIT, join(dir, 'data')], {
        encoding: 'utf8',
        timeout: 120_000,
      })
      assert.equal(child.stdout, 'exited\n', child.stderr)
      assert.equal(child.status, 0)
    })
  })
})
