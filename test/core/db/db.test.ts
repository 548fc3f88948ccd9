import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  LISTENER_LOST,
  MigrationError,
  migrate,
  openDb,
  prepared,
} from '../../../src/core/db/index.ts'
import { coreMigrations } from '../../../src/core/migrations.ts'
import {
  createPostgresDatabase,
  freshDatabase,
  migratedDatabase,
  type TestDatabase,
  testEngine,
} from '../../support/db.ts'

/** Directories made by migrationDir, removed after the migration tests. */
const madeDirs: string[] = []

async function migrationDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dflare-mig-'))
  madeDirs.push(dir)
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql)
  return dir
}

describe(`core/db on ${testEngine}`, () => {
  let t: TestDatabase
  before(async () => {
    t = await migratedDatabase()
  })
  after(() => t.close())

  it('returns int8 as number, bytea as Buffer, jsonb parsed, timestamptz as Date', async () => {
    const { rows } = await t.db.query<{ a: number; b: Buffer; c: unknown; d: Date }>(
      "SELECT 9007199254740991::int8 AS a, '\\x0102'::bytea AS b, '{\"k\":[1]}'::jsonb AS c, now() AS d",
    )
    assert.equal(rows[0]!.a, Number.MAX_SAFE_INTEGER)
    assert.deepEqual([...rows[0]!.b], [1, 2])
    assert.deepEqual(rows[0]!.c, { k: [1] })
    assert.ok(rows[0]!.d instanceof Date)
  })

  it('parameters and results mean the same inside a transaction as outside', async () => {
    const sql = `SELECT $1::int8 AS n, $2::bytea AS b, $3::jsonb AS j, $4::text[] AS a,
      $5::timestamptz AS d, $6::text AS z, $7::boolean AS t, $8::text AS q`
    const params = [
      Number.MAX_SAFE_INTEGER,
      Buffer.from([0, 1, 0xff]),
      { k: ['v', 1], 'quo"te': "it's" },
      ['a', 'b,c', 'd"e', 'f\\g', ''],
      new Date('2026-11-29T12:00:00.123Z'),
      null,
      true,
      "'; DROP TABLE x; --",
    ]
    const outside = (await t.db.query(sql, params)).rows[0]
    const inside = await t.db.transaction(async (tx) => (await tx.query(sql, params)).rows[0])
    assert.deepEqual(inside, outside)
    assert.deepEqual(inside, {
      n: Number.MAX_SAFE_INTEGER,
      b: Buffer.from([0, 1, 0xff]),
      j: { k: ['v', 1], 'quo"te': "it's" },
      a: ['a', 'b,c', 'd"e', 'f\\g', ''],
      d: new Date('2026-11-29T12:00:00.123Z'),
      z: null,
      t: true,
      q: "'; DROP TABLE x; --",
    })
    assert.ok(Buffer.isBuffer(inside!.b))
  })

  it('a prepared statement means what its text means, run again, in transactions, after failing', async () => {
    const sql = 'SELECT $1::int8 / $2::int8 AS q, $3::text[] AS a, $4::jsonb AS j'
    const statement = prepared(sql)
    assert.equal(prepared(sql), statement, 'one statement per text')
    assert.notEqual(prepared(`${sql} `).name, statement.name, 'another text, another name')
    const params = [7, 2, ['x', 'y"z'], { k: 1 }]
    const expected = (await t.db.query(sql, params)).rows
    assert.deepEqual((await t.db.query(statement, params)).rows, expected)
    assert.deepEqual((await t.db.query(statement, params)).rows, expected)
    const err = await t.db.query(statement, [1, 0, [], null]).catch((e: unknown) => e)
    assert.equal((err as { code?: string }).code, '22012', 'division by zero')
    assert.deepEqual(
      await t.db.transaction(async (tx) => {
        const first = (await tx.query(statement, params)).rows
        assert.deepEqual((await tx.query(statement, params)).rows, first)
        return first
      }),
      expected,
    )
    // Prepared on some connections and not others: every connection of the pool answers alike.
    const many = await Promise.all(
      Array.from({ length: 12 }, () => t.db.transaction((tx) => tx.query(statement, params))),
    )
    for (const r of many) assert.deepEqual(r.rows, expected)
  })

  it('inside a transaction: errors carry their SQLSTATE, and statements not awaited run one at a time', async () => {
    await t.db.query('CREATE TABLE tx_unique (v int PRIMARY KEY)')
    await assert.rejects(
      t.db.transaction(async (tx) => {
        await tx.query('INSERT INTO tx_unique VALUES ($1)', [1])
        await tx.query('INSERT INTO tx_unique VALUES ($1)', [1])
      }),
      (err: { code?: string }) => err.code === '23505',
    )
    const results = await t.db.transaction(async (tx) => {
      const issued = Array.from({ length: 20 }, (_, i) =>
        tx.query<{ v: number }>('INSERT INTO tx_unique VALUES ($1) RETURNING v', [i]),
      )
      return (await Promise.all(issued)).map((r) => r.rows[0]!.v)
    })
    assert.deepEqual(
      results,
      Array.from({ length: 20 }, (_, i) => i),
    )
  })

  it('commits a transaction that resolves and rolls back one that throws', async () => {
    await t.db.query('CREATE TABLE tx_probe (v int)')
    await t.db.transaction(async (tx) => {
      await tx.query('INSERT INTO tx_probe VALUES (1)')
    })
    await assert.rejects(
      t.db.transaction(async (tx) => {
        await tx.query('INSERT INTO tx_probe VALUES (2)')
        throw new Error('boom')
      }),
      /boom/,
    )
    const { rows } = await t.db.query<{ v: number }>('SELECT v FROM tx_probe ORDER BY v')
    assert.deepEqual(
      rows.map((r) => r.v),
      [1],
    )
  })

  it('row-level security hides other tenants rows from the restricted role', async () => {
    await t.db.transaction(async (tx) => {
      await tx.exec(`
        CREATE TABLE rls_probe (tenant text NOT NULL, secret text NOT NULL);
        ALTER TABLE rls_probe ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant_rows ON rls_probe USING (tenant = core.current_tenant())
          WITH CHECK (tenant = core.current_tenant());
        GRANT SELECT, INSERT ON rls_probe TO dflare_app;
        INSERT INTO rls_probe VALUES ('acme', 'acme-data'), ('globex', 'globex-data');
      `)
    })
    const asTenant = (tenant: string | undefined) =>
      t.db.transaction(
        async (tx) =>
          (await tx.query<{ secret: string }>('SELECT secret FROM rls_probe ORDER BY 1')).rows.map(
            (r) => r.secret,
          ),
        { role: 'dflare_app', settings: tenant ? { 'dflare.tenant': tenant } : {} },
      )
    assert.deepEqual(await asTenant('acme'), ['acme-data'])
    assert.deepEqual(await asTenant('globex'), ['globex-data'])
    assert.deepEqual(await asTenant(undefined), [], 'no tenant set: nothing visible (fail closed)')
    // Writing a row for another tenant is refused by the WITH CHECK clause.
    await assert.rejects(
      t.db.transaction(
        async (tx) => tx.query("INSERT INTO rls_probe VALUES ('globex', 'forged')"),
        {
          role: 'dflare_app',
          settings: { 'dflare.tenant': 'acme' },
        },
      ),
      /row-level security/,
    )
    // The owner still sees everything: RLS applies to the restricted role.
    const all = await t.db.query('SELECT * FROM rls_probe')
    assert.equal(all.rowCount, 2)
  })

  it('the restricted role has no access to tables it was not granted', async () => {
    await t.db.query('CREATE TABLE private_probe (v int)')
    await assert.rejects(
      t.db.transaction(async (tx) => tx.query('SELECT * FROM private_probe'), {
        role: 'dflare_app',
      }),
      /permission denied/,
    )
  })

  it('refuses role names that are not plain identifiers', async () => {
    await assert.rejects(
      t.db.transaction(async () => {}, { role: 'x; DROP TABLE y' }),
      /invalid role/,
    )
  })

  it('a statement the caller did not wait for still decides the transaction', async () => {
    await t.db.query('CREATE TABLE pipe_probe (v int PRIMARY KEY)')
    await t.db.transaction(async (tx) => {
      tx.query('INSERT INTO pipe_probe VALUES (1)')
      tx.query('INSERT INTO pipe_probe VALUES (2)')
    })
    // The second insert fails (duplicate key) after the function returned: nothing commits.
    await assert.rejects(
      t.db.transaction(async (tx) => {
        await tx.query('INSERT INTO pipe_probe VALUES (3)')
        tx.query('INSERT INTO pipe_probe VALUES (1)')
      }),
      /duplicate key/,
    )
    const { rows } = await t.db.query<{ v: number }>('SELECT v FROM pipe_probe ORDER BY v')
    assert.deepEqual(
      rows.map((r) => r.v),
      [1, 2],
    )
  })

  it('a statement that failed before reaching the database still fails the transaction', async () => {
    await t.db.query('CREATE TABLE encode_probe (v int)')
    const circular: Record<string, unknown> = {}
    circular.self = circular
    await assert.rejects(
      t.db.transaction(async (tx) => {
        await tx.query('INSERT INTO encode_probe VALUES (1)')
        // Not awaited, and it cannot be encoded: it never reaches the database.
        tx.query('SELECT $1::jsonb', [circular])
        await tx.query('INSERT INTO encode_probe VALUES (2)')
      }),
      /circular/i,
    )
    const { rows } = await t.db.query('SELECT * FROM encode_probe')
    assert.deepEqual(rows, [])
  })

  it('BEGIN sent with the first statement: role, settings and read-only apply to it', async () => {
    const read = (options: Parameters<typeof t.db.transaction>[1]) =>
      t.db.transaction(
        async (tx) =>
          (
            await tx.query<{ who: string; tenant: string; ro: string }>(
              `SELECT current_user AS who, current_setting('dflare.tenant', true) AS tenant,
                      current_setting('transaction_read_only') AS ro`,
            )
          ).rows[0],
        { pipelineBegin: true, ...options },
      )
    assert.deepEqual(
      await read({
        role: 'dflare_app',
        readOnly: true,
        settings: { 'dflare.tenant': 'acme' },
      }),
      { who: 'dflare_app', tenant: 'acme', ro: 'on' },
    )
    // A value outside the plain character set is sent as a parameter, still before the statement.
    assert.deepEqual(
      await read({ role: 'dflare_app', settings: { 'dflare.tenant': "o'brien; --" } }),
      { who: 'dflare_app', tenant: "o'brien; --", ro: 'off' },
    )
    await assert.rejects(
      t.db.transaction(async (tx) => tx.query('CREATE TABLE ro_probe (v int)'), {
        readOnly: true,
        pipelineBegin: true,
      }),
      /read-only/,
    )
    // The isolation level applies too (on PGlite: SET TRANSACTION in the same call as the rest).
    for (const isolation of ['repeatable read', 'serializable'] as const)
      assert.equal(
        await t.db.transaction(
          async (tx) =>
            (
              await tx.query<{ level: string }>(
                "SELECT current_setting('transaction_isolation') AS level",
              )
            ).rows[0]!.level,
          { isolation, readOnly: true, role: 'dflare_app' },
        ),
        isolation,
      )
  })

  it('genericPlans: one plan per statement for that transaction only, on the engine that caches plans', async () => {
    const mode = async (q: { query: typeof t.db.query }) =>
      (await q.query<{ m: string }>("SELECT current_setting('plan_cache_mode') AS m")).rows[0]!.m
    const outside = await mode(t.db)
    const inside = await t.db.transaction((tx) => mode(tx), {
      role: 'dflare_app',
      genericPlans: true,
    })
    // PGlite plans every execution of its prepared statements (force_custom_plan) but in such a
    // transaction; PostgreSQL gets unnamed statements, planned once each, and is left as it is.
    assert.equal(outside, t.db.engine === 'pglite' ? 'force_custom_plan' : 'auto')
    assert.equal(inside, t.db.engine === 'pglite' ? 'force_generic_plan' : 'auto')
    assert.equal(await mode(t.db), outside, 'local to the transaction')
    assert.equal(await t.db.transaction((tx) => mode(tx)), outside)
  })

  it('BEGIN sent with the first statement: if the role cannot be set, no result is handed over', async () => {
    await t.db.query('CREATE TABLE owner_only (secret text)')
    await t.db.query("INSERT INTO owner_only VALUES ('owner-data')")
    let handedOver: unknown
    await assert.rejects(
      t.db.transaction(
        async (tx) => {
          handedOver = (await tx.query('SELECT secret FROM owner_only')).rows
        },
        { role: 'no_such_role_probe', pipelineBegin: true },
      ),
      /no_such_role_probe|does not exist/,
    )
    assert.equal(handedOver, undefined)
  })

  it('delivers NOTIFY to listeners, including notifications sent inside a committed transaction', async () => {
    const got: string[] = []
    const unsubscribe = await t.db.listen('probe_channel', (p) => got.push(p))
    await t.db.notify('probe_channel', 'one')
    await t.db.transaction(async (tx) => {
      await tx.query("SELECT pg_notify('probe_channel', 'two')")
    })
    await assert.rejects(
      t.db.transaction(async (tx) => {
        await tx.query("SELECT pg_notify('probe_channel', 'rolled-back')")
        throw new Error('abort')
      }),
    )
    for (let i = 0; i < 50 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 20))
    await unsubscribe()
    assert.deepEqual(got, ['one', 'two'])
    assert.notEqual(got[0], LISTENER_LOST)
  })
})

describe(`closing on ${testEngine}`, () => {
  it('closing twice is harmless, and a closed database refuses queries', async () => {
    const t = await freshDatabase()
    const db = t.db
    await db.close()
    await db.close()
    await assert.rejects(db.query('SELECT 1'))
    await t.close() // the test helper closes again, then drops the database
  })

  it('two closes at once both resolve, after one close', async () => {
    const t = await freshDatabase()
    await t.db.query('SELECT 1')
    await Promise.all([t.db.close(), t.db.close()])
    await assert.rejects(t.db.query('SELECT 1'))
    await t.close()
  })
})

describe(`migrations on ${testEngine}`, () => {
  after(() => Promise.all(madeDirs.map((d) => rm(d, { recursive: true, force: true }))))

  it('applies each migration once, in order, and records it', async () => {
    const t = await freshDatabase()
    try {
      const dir = await migrationDir({
        '0001_first.sql': 'CREATE SCHEMA probe; CREATE TABLE probe.a (v int);',
        '0002_second.sql': 'INSERT INTO probe.a VALUES (1);',
      })
      const first = await migrate(t.db, [coreMigrations, { module: 'probe', dir }])
      assert.deepEqual(
        first.map((m) => `${m.module}/${m.version}`),
        ['core/1', 'core/2', 'probe/1', 'probe/2'],
      )
      const second = await migrate(t.db, [coreMigrations, { module: 'probe', dir }])
      assert.equal(second.length, 0)
      assert.equal((await t.db.query('SELECT * FROM probe.a')).rowCount, 1)
    } finally {
      await t.close()
    }
  })

  it('refuses a migration edited after it was applied, and broken numbering', async () => {
    const t = await freshDatabase()
    try {
      const dir = await migrationDir({ '0001_first.sql': 'CREATE TABLE m1 (v int);' })
      await migrate(t.db, [{ module: 'probe', dir }])
      await writeFile(join(dir, '0001_first.sql'), 'CREATE TABLE m1 (v bigint);')
      await assert.rejects(migrate(t.db, [{ module: 'probe', dir }]), MigrationError)
      const gap = await migrationDir({ '0001_a.sql': 'SELECT 1;', '0003_c.sql': 'SELECT 1;' })
      await assert.rejects(migrate(t.db, [{ module: 'gap', dir: gap }]), /numbering/)
    } finally {
      await t.close()
    }
  })

  it('a failing migration leaves nothing applied', async () => {
    const t = await freshDatabase()
    try {
      const dir = await migrationDir({
        '0001_ok.sql': 'CREATE TABLE half (v int);',
        '0002_bad.sql': 'CREATE TABLE broken (v nosuchtype);',
      })
      await assert.rejects(migrate(t.db, [coreMigrations, { module: 'probe', dir }]))
      const { rows } = await t.db.query<{ t: string | null }>(
        "SELECT to_regclass('half')::text AS t",
      )
      assert.equal(rows[0]!.t, null)
    } finally {
      await t.close()
    }
  })

  it('two concurrent starters against the same PostgreSQL apply migrations exactly once', {
    skip: testEngine !== 'postgres' && 'needs DFLARE_TEST_DATABASE_URL',
  }, async () => {
    const created = await createPostgresDatabase()
    // Not idempotent on purpose: applying it twice would fail or double the row.
    const dir = await migrationDir({
      '0001_table.sql': 'CREATE TABLE once (v int);',
      '0002_row.sql': 'SELECT pg_sleep(0.2); INSERT INTO once VALUES (1);',
    })
    const starters = await Promise.all(
      [1, 2, 3].map(() => openDb({ kind: 'postgres', url: created.url })),
    )
    try {
      const results = await Promise.all(
        starters.map((db) => migrate(db, [coreMigrations, { module: 'probe', dir }])),
      )
      const applied = results.map((r) => r.length).sort()
      assert.deepEqual(applied, [0, 0, 4], 'exactly one starter applied the four migrations')
      const { rows } = await starters[0]!.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM once',
      )
      assert.equal(rows[0]!.n, 1)
      const recorded = await starters[0]!.query(
        "SELECT * FROM core.migrations WHERE module = 'probe'",
      )
      assert.equal(recorded.rowCount, 2)
    } finally {
      for (const db of starters) await db.close()
      await created.drop()
    }
  })
})

describe('PGlite single-connection guard', {
  skip: testEngine !== 'pglite' && 'PGlite only',
}, () => {
  it('a query on the database from inside a transaction fails fast instead of deadlocking', async () => {
    const t = await freshDatabase()
    try {
      await assert.rejects(
        t.db.transaction(async () => {
          await t.db.query('SELECT 1')
        }),
        /use the transaction handle/,
      )
      await assert.rejects(
        t.db.transaction(async () => t.db.transaction(async () => {})),
        /use the transaction handle/,
      )
      // Unrelated concurrent work outside the transaction still just waits its turn.
      const [a, b] = await Promise.all([
        t.db.transaction(async (tx) => (await tx.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n),
        t.db.query<{ n: number }>('SELECT 2 AS n'),
      ])
      assert.equal(a + b.rows[0]!.n, 3)
    } finally {
      await t.close()
    }
  })

  it('gives the connection in the order asked; a failed turn does not hold up the next', async () => {
    const t = await freshDatabase()
    try {
      const order: string[] = []
      let open!: () => void
      const gate = new Promise<void>((resolve) => (open = resolve))
      const first = t.db.transaction(async (tx) => {
        await tx.query('SELECT 1')
        order.push('first')
        await gate
      })
      const failing = t.db.transaction(async () => {
        order.push('failing')
        throw new Error('boom')
      })
      const third = t.db.query('SELECT 3 AS n').then(() => order.push('third'))
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.deepEqual(order, ['first'], 'the others wait while the first has the connection')
      open()
      await first
      await assert.rejects(failing, /boom/)
      await third
      assert.deepEqual(order, ['first', 'failing', 'third'])
    } finally {
      await t.close()
    }
  })

  it('close waits for the transaction that has the connection, then refuses', async () => {
    const t = await freshDatabase()
    try {
      let open!: () => void
      const gate = new Promise<void>((resolve) => (open = resolve))
      const running = t.db.transaction(async (tx) => {
        await gate
        return (await tx.query<{ n: number }>('SELECT 7 AS n')).rows[0]!.n
      })
      const closing = t.db.close()
      await new Promise((resolve) => setTimeout(resolve, 50))
      open()
      assert.equal(await running, 7, 'the transaction finished on the open database')
      await closing
      await assert.rejects(t.db.query('SELECT 1'), /closed/)
    } finally {
      await t.close()
    }
  })
})
