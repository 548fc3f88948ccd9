import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { PGlite } from '@electric-sql/pglite'
import fc from 'fast-check'
import { PgliteDb } from '../../../src/core/db/pglite.ts'
import { PgliteWire } from '../../../src/core/db/pglite-wire.ts'
import { typeParsers } from '../../../src/core/db/postgres.ts'

/** Statements PostgreSQL holds prepared on the one connection (named by the wire). */
function serverStatements(wire: PgliteWire): string[] {
  return wire
    .query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name')
    .rows.map((r) => r.name)
}

describe('core/db/pglite-wire: PGlite through node-postgres protocol code', () => {
  let pg: PGlite
  before(async () => {
    pg = await PGlite.create()
  })
  after(() => pg.close())

  it('prepares a statement text once and runs it with each call’s parameters', () => {
    const wire = new PgliteWire(pg, typeParsers)
    const sql = 'SELECT $1::int + 1 AS n'
    for (const n of [1, 2, 3]) assert.equal(wire.query<{ n: number }>(sql, [n]).rows[0]!.n, n + 1)
    assert.equal(wire.preparedCount, 1)
  })

  it('keeps at most the cache size prepared, closing the least recently used on the server', () => {
    const wire = new PgliteWire(pg, typeParsers, 2)
    wire.query('SELECT 1 AS a')
    wire.query('SELECT 2 AS b')
    wire.query('SELECT 1 AS a') // a is now the most recent
    wire.query('SELECT 3 AS c') // evicts b
    assert.equal(wire.preparedCount, 2)
    // Closes go out with the next exchange: a's and c's statements and this listing's remain
    // (the listing evicts a in turn, closed with the exchange after it).
    assert.equal(serverStatements(wire).filter((n) => n.startsWith(wire.prefix)).length, 3)
    assert.equal(wire.query<{ a: number }>('SELECT 1 AS a').rows[0]!.a, 1)
  })

  it('forgets every statement when the schema changes, so SELECT * sees new columns', () => {
    const wire = new PgliteWire(pg, typeParsers)
    wire.script('CREATE TABLE wire_shape (a int); INSERT INTO wire_shape VALUES (1)')
    assert.deepEqual(wire.query('SELECT * FROM wire_shape').rows, [{ a: 1 }])
    wire.script("ALTER TABLE wire_shape ADD COLUMN b text DEFAULT 'x'")
    assert.equal(wire.preparedCount, 0)
    assert.deepEqual(wire.query('SELECT * FROM wire_shape').rows, [{ a: 1, b: 'x' }])
  })

  it('runs a statement PostgreSQL finds stale again, parsed afresh, outside a transaction', () => {
    const wire = new PgliteWire(pg, typeParsers)
    wire.script('CREATE TABLE wire_stale (a int); INSERT INTO wire_stale VALUES (1)')
    wire.query('SELECT * FROM wire_stale')
    // A change the wire cannot see (its tag is DO): the cached plan's result type is now wrong.
    wire.script("DO $$ BEGIN EXECUTE 'ALTER TABLE wire_stale ADD COLUMN b int'; END $$")
    assert.equal(wire.preparedCount, 1)
    assert.deepEqual(wire.query('SELECT * FROM wire_stale').rows, [{ a: 1, b: null }])
    // The stale statement is closed on the server (with the next exchange): nothing leaks.
    wire.query('SELECT 1')
    const mine = serverStatements(wire).filter((n) => n.startsWith(wire.prefix))
    assert.equal(mine.length, wire.preparedCount)
  })

  it('a batch parses a text it holds twice once, and runs it with each set of parameters', () => {
    const wire = new PgliteWire(pg, typeParsers)
    const set = 'SELECT set_config($1, $2, false) AS v'
    const results = wire.batch([
      { sql: set, params: ['dflare.a', 'one'] },
      { sql: set, params: ['dflare.b', 'two'] },
      { sql: "SELECT current_setting('dflare.a') || current_setting('dflare.b') AS both" },
    ])
    assert.deepEqual(
      results.map((r) => r.rows[0]),
      [{ v: 'one' }, { v: 'two' }, { both: 'onetwo' }],
    )
    assert.equal(wire.preparedCount, 2)
    const mine = serverStatements(wire).filter((n) => n.startsWith(wire.prefix))
    assert.equal(mine.length, 3) // the two texts and the listing
  })

  it('inside a transaction a stale statement fails it, and is forgotten for the next run', () => {
    const wire = new PgliteWire(pg, typeParsers)
    wire.script('CREATE TABLE wire_stale_tx (a int); INSERT INTO wire_stale_tx VALUES (1)')
    wire.query('SELECT * FROM wire_stale_tx')
    wire.script("DO $$ BEGIN EXECUTE 'ALTER TABLE wire_stale_tx ADD COLUMN b int'; END $$")
    wire.script('BEGIN')
    assert.throws(
      () => wire.query('SELECT * FROM wire_stale_tx'),
      (err: Error & { code?: string }) => err.code === '0A000',
    )
    assert.ok(wire.inTransaction)
    const [ended] = wire.script('COMMIT')
    assert.equal(ended!.command, 'ROLLBACK')
    assert.deepEqual(wire.query('SELECT * FROM wire_stale_tx').rows, [{ a: 1, b: null }])
  })

  it('errors carry their SQLSTATE; a statement that does not parse is not kept', () => {
    const wire = new PgliteWire(pg, typeParsers)
    assert.throws(
      () => wire.query('SELEC 1'),
      (err: Error & { code?: string }) => err.code === '42601',
    )
    assert.equal(wire.preparedCount, 0)
    assert.throws(
      () => wire.query('SELECT 1 / $1::int AS q', [0]),
      (err: Error & { code?: string }) => err.code === '22012',
    )
    // It parsed, so it is kept; the connection is usable.
    assert.equal(wire.preparedCount, 1)
    assert.equal(wire.query<{ q: number }>('SELECT 1 / $1::int AS q', [1]).rows[0]!.q, 1)
  })

  it('reports rowCount from the command tag', () => {
    const wire = new PgliteWire(pg, typeParsers)
    wire.script('CREATE TABLE wire_count (a int)')
    assert.equal(wire.query('INSERT INTO wire_count SELECT generate_series(1, 5)').rowCount, 5)
    assert.equal(wire.query('UPDATE wire_count SET a = a + 1 WHERE a > $1', [2]).rowCount, 3)
    assert.equal(wire.query('SELECT * FROM wire_count').rowCount, 5)
  })

  it('text and arrays round-trip as parameters (property)', () => {
    const wire = new PgliteWire(pg, typeParsers)
    // PostgreSQL text holds any Unicode but NUL.
    const text = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !s.includes('\0'))
    fc.assert(
      fc.property(text, fc.array(text, { maxLength: 5 }), fc.integer(), (s, arr, n) => {
        const row = wire.query<{ s: string; arr: string[]; n: number }>(
          'SELECT $1::text AS s, $2::text[] AS arr, $3::int8 AS n',
          [s, arr, n],
        ).rows[0]!
        assert.equal(row.s, s)
        assert.deepEqual(row.arr, arr)
        assert.equal(row.n, n)
      }),
      { numRuns: 300 },
    )
    assert.equal(wire.preparedCount, 1)
  })
})

describe('core/db/pglite: notifications through the wire', () => {
  let db: PgliteDb
  before(async () => {
    db = await PgliteDb.open()
  })
  after(() => db.close())

  it('delivers a notification after its transaction commits, and none after unlisten', async () => {
    const got: string[] = []
    const unlisten = await db.listen('wire_events', (p) => got.push(p))
    await db.transaction(async (tx) => {
      await tx.query("SELECT pg_notify('wire_events', 'in-tx')")
      await new Promise((r) => setTimeout(r, 5))
      assert.deepEqual(got, []) // not before the commit
    })
    await db.notify('wire_events', 'autocommit')
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(got, ['in-tx', 'autocommit'])
    // A rolled-back notification is never delivered.
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.query("SELECT pg_notify('wire_events', 'rolled-back')")
        throw new Error('abort')
      }),
      /abort/,
    )
    await unlisten()
    await db.notify('wire_events', 'after')
    await new Promise((r) => setImmediate(r))
    assert.deepEqual(got, ['in-tx', 'autocommit'])
  })
})
