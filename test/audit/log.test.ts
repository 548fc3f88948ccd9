import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { canonicalBytes, toRecord } from '../../src/audit/event.ts'
import { leafHash } from '../../src/audit/merkle.ts'
import { Pseudonymizer } from '../../src/audit/pseudonym.ts'
import { AuditSink, ENQUEUE, enqueue } from '../../src/audit/sink.ts'
import { verifyDatabase } from '../../src/audit/tools.ts'
import type { Db } from '../../src/core/db/index.ts'
import { type AuditFixture, auditFixture, event, recordMany } from './helpers.ts'

async function tamper(f: AuditFixture, ...statements: [string, unknown[]?][]) {
  // As the owner/superuser, bypassing the append-only triggers.
  await f.db.transaction(async (tx) => {
    await tx.query('SET LOCAL session_replication_role = replica')
    for (const [sql, params] of statements) await tx.query(sql, params as never)
  })
}

describe('audit log: append, fail closed, minimization', () => {
  let f: AuditFixture
  before(async () => {
    f = await auditFixture()
  })
  after(() => f.close())

  it('appends inside the caller transaction: both commit or neither does', async () => {
    await f.db.transaction(async (tx) => {
      await f.audit.sink.record(event(1, { tenant: 'tx' }), tx)
    })
    await assert.rejects(
      f.db.transaction(async (tx) => {
        await f.audit.sink.record(event(2, { tenant: 'tx' }), tx)
        throw new Error('the state change failed')
      }),
    )
    await f.db.transaction(
      async (tx) => {
        await f.audit.sink.record(event(3, { tenant: 'tx' }), tx)
      },
      { role: 'dflare_app', settings: { 'dflare.tenant': 'tx' } },
    )
    await f.audit.sequencer.drain()
    const { rows } = await f.db.query<{ idx: number; correlation_id: string }>(
      "SELECT idx, correlation_id FROM audit.events WHERE log = 'tx' ORDER BY idx",
    )
    assert.deepEqual(rows, [
      { idx: 0, correlation_id: 'cid-1' },
      { idx: 1, correlation_id: 'cid-3' },
    ])
  })

  it('stores a body exactly, alone or in a group, whatever characters its details hold', async () => {
    const note = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((x) => !x.includes('\0'))
    let run = 0
    // Queued or already integrated by the sequencer: a run's bodies, in the order they went in.
    const stored = async (marker: string) =>
      (
        await f.db.query<{ body: string }>(
          `SELECT body FROM (
             SELECT body, 0 AS part, id AS k FROM audit.queue WHERE log = 'chars'
             UNION ALL SELECT body, 1, idx FROM audit.events WHERE log = 'chars') b
           WHERE strpos(body, $1) > 0 ORDER BY part, k`,
          [marker],
        )
      ).rows.map((r) => r.body)
    await fc.assert(
      fc.asyncProperty(fc.array(note, { minLength: 1, maxLength: 3 }), async (notes) => {
        const marker = `chars-${++run}-`
        const events = notes.map((n, i) =>
          event(i, { tenant: 'chars', correlationId: `${marker}${i}`, details: { note: n } }),
        )
        const prepared = events.map((e) => f.audit.sink.prepare(e).body)
        // One statement per event, in the caller's transaction.
        await f.db.transaction(async (tx) => {
          for (const e of events) await f.audit.sink.record(e, tx)
        })
        assert.deepEqual((await stored(marker)).sort(), [...prepared].sort())
        // The group commit's path: one statement with arrays.
        const again = `chars-${++run}-`
        const grouped = events.map((e, i) =>
          f.audit.sink.prepare({ ...e, correlationId: `${again}${i}` }),
        )
        await enqueue(f.db, grouped)
        assert.deepEqual((await stored(again)).sort(), grouped.map((g) => g.body).sort())
      }),
      { numRuns: 25 },
    )
  })

  it('fails closed: an invalid event throws and rolls the caller back', async () => {
    await assert.rejects(
      f.db.transaction(async (tx) => {
        await tx.query("SELECT pg_notify('x', 'state change')")
        await f.audit.sink.record(event(1, { tenant: 'Not A Tenant!' }), tx)
      }),
      /tenant is malformed/,
    )
    await assert.rejects(f.audit.sink.record(event(1, { outcome: 'maybe' as never })))
  })

  it('the application role may only queue events; nobody may update, delete or truncate', async () => {
    await f.audit.sink.record(event(1, { tenant: 'priv' }))
    await f.audit.sequencer.drain()
    for (const sql of [
      "UPDATE audit.events SET body = '{}' WHERE log = 'priv'",
      "DELETE FROM audit.events WHERE log = 'priv'",
      'TRUNCATE audit.events',
      'SELECT * FROM audit.events',
      "UPDATE audit.heads SET size = 0 WHERE log = 'priv'",
      'DELETE FROM audit.checkpoints',
      // The log itself belongs to the sequencer: the application cannot append to it directly,
      // nor read, change or drop what is queued.
      "INSERT INTO audit.events (log, idx, body, leaf_hash, root) VALUES ('priv', 9, '{}', '\\x00', '\\x00')",
      "INSERT INTO audit.heads (log) VALUES ('forged')",
      'SELECT * FROM audit.queue',
      "DELETE FROM audit.queue WHERE log = 'priv'",
      "UPDATE audit.queue SET body = '{}' WHERE log = 'priv'",
      'TRUNCATE audit.queue',
    ])
      await assert.rejects(
        f.db.transaction((tx) => tx.query(sql), { role: 'dflare_app' }),
        /permission denied|append-only|only grows/,
        sql,
      )
    for (const sql of [
      "UPDATE audit.events SET body = '{}' WHERE log = 'priv'",
      "DELETE FROM audit.events WHERE log = 'priv'",
      'TRUNCATE audit.events',
      "DELETE FROM audit.heads WHERE log = 'priv'",
      "UPDATE audit.heads SET size = 0 WHERE log = 'priv'",
    ])
      await assert.rejects(f.db.query(sql), /append-only|only grows/, `owner: ${sql}`)
    // A queued event cannot be changed either (checked on a row no sequencer can see yet).
    for (const sql of [
      "UPDATE audit.queue SET body = '{}' WHERE log = 'priv'",
      'TRUNCATE audit.queue',
    ])
      await assert.rejects(
        f.db.transaction(async (tx) => {
          await f.audit.sink.record(event(2, { tenant: 'priv' }), tx)
          await tx.query(sql)
        }),
        /append-only/,
        `owner: ${sql}`,
      )
  })

  it('the queue takes log and body from the writer role and the control plane, nothing more', async () => {
    // The application role holds the writer role: it can queue an event...
    await f.db.transaction((tx) => enqueue(tx, [{ log: 'fn', body: '{"v":1}' }]), {
      role: 'dflare_app',
    })
    // (queued, or already in the log if a sequencer kick of an earlier test came in between)
    assert.equal(
      (
        await f.db.query<{ n: number }>(
          `SELECT ((SELECT count(*) FROM audit.queue WHERE log = 'fn')
                + (SELECT count(*) FROM audit.events WHERE log = 'fn'))::int AS n`,
        )
      ).rows[0]!.n,
      1,
    )
    // ...but not set any other column, nor read what is queued,
    await assert.rejects(
      f.db.transaction(
        (tx) =>
          tx.query(
            "INSERT INTO audit.queue (log, body, queued_at) VALUES ('fn', '{}', now() - interval '1 day')",
          ),
        { role: 'dflare_app' },
      ),
      /permission denied/,
    )
    await assert.rejects(
      f.db.transaction((tx) => tx.query('SELECT body FROM audit.queue'), { role: 'dflare_app' }),
      /permission denied/,
    )
    // a role without it cannot queue at all,
    await assert.rejects(
      f.db.transaction((tx) => enqueue(tx, [{ log: 'fn', body: '{}' }]), {
        role: 'dflare_audit_sequencer',
      }),
      /permission denied/,
    )
    // and logs and bodies must pair up (unnest pads the shorter with NULLs, which are refused).
    await assert.rejects(f.db.query(ENQUEUE.many, [['fn', 'fn'], ['{}']]), /null value/)
    await assert.rejects(enqueue(f.db, [{ log: '', body: '{}' }]), /check/)
  })

  it('group commits take every event waiting while one is in flight, in one statement', async () => {
    let statements = 0
    const counting = Object.create(f.db, {
      query: {
        value: (sql: string, params?: never) => {
          statements++
          return f.db.query(sql, params)
        },
      },
    }) as Db
    const sink = new AuditSink({
      db: counting,
      clock: f.clock,
      pseudonymizer: f.audit.pseudonymizer,
      maxBatch: 1000,
    })
    await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        sink.record(event(i, { tenant: 'grouped', correlationId: `g-${i}` })),
      ),
    )
    // The first event goes alone; the other 59 arrived while it was in flight and go together.
    assert.equal(statements, 2)
    await f.audit.sequencer.drain()
    const { rows } = await f.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit.events WHERE log = 'grouped'",
    )
    assert.equal(rows[0]!.n, 60)
  })

  it('many concurrent writers across logs get gapless indexes and a verifying tree', async () => {
    const writes: Promise<unknown>[] = []
    for (let i = 0; i < 300; i++) {
      const tenant = ['con-a', 'con-b', 'con-c'][i % 3]!
      writes.push(
        i % 4 === 0
          ? f.db.transaction((tx) => f.audit.sink.record(event(i, { tenant }), tx), {
              role: 'dflare_app',
            })
          : f.audit.sink.record(event(i, { tenant })),
      )
    }
    await Promise.all(writes)
    await f.audit.sequencer.drain()
    const { rows } = await f.db.query<{ log: string; n: number; max: number }>(
      "SELECT log, count(*)::int AS n, max(idx)::int AS max FROM audit.events WHERE log LIKE 'con-%' GROUP BY log ORDER BY log",
    )
    assert.deepEqual(rows, [
      { log: 'con-a', n: 100, max: 99 },
      { log: 'con-b', n: 100, max: 99 },
      { log: 'con-c', n: 100, max: 99 },
    ])
    const report = await verifyDatabase(f.db, { logs: ['con-a', 'con-b', 'con-c'] })
    assert.ok(report.ok, JSON.stringify(report))
  })

  it('stores the AU-3 fields, canonical JSON and pseudonyms, never secrets', async () => {
    const p = new Pseudonymizer(Buffer.alloc(32, 1), { pseudonymizeIps: true })
    const record = toRecord(
      {
        type: 'token.issued',
        tenant: 'acme',
        actor: { kind: 'user', id: 'Alice@Example.com', realm: 'acme' },
        action: 'token',
        outcome: 'success',
        sourceIp: '192.0.2.1',
        userAgent: 'ua',
        correlationId: 'c1',
        details: {
          password: 'hunter2',
          jti: 'tok-123',
          client_secret: 's3cr3t',
          refresh_token: 'abc',
          note: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig',
          contact: 'bob@example.org',
          nested: { otp: '123456', count: 2 },
        },
      },
      p,
      new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)),
    )
    const text = canonicalBytes(record).toString()
    for (const secret of [
      'hunter2',
      's3cr3t',
      'abc"',
      '123456',
      'tok-123',
      'Alice',
      'bob@',
      '192.0.2.1',
      'eyJ',
    ])
      assert.ok(!text.includes(secret), `${secret} leaked: ${text}`)
    assert.equal(record.time, '2026-01-02T03:04:05.006Z')
    assert.equal(record.actor.id, p.pseudonym('email', 'alice@example.com'))
    assert.equal(record.sourceIp, p.pseudonym('ip', '192.0.2.1'))
    assert.equal((record.details as { jti: string }).jti, p.pseudonym('tok', 'tok-123'))
    // RFC 8785: keys sorted, no whitespace.
    assert.ok(text.startsWith('{"action":"token","actor":{"id":"email:'))
    assert.ok(leafHash(Buffer.from(text)).equals(leafHash(canonicalBytes(record))))
    // IPs stay in clear unless configured otherwise.
    const clear = new Pseudonymizer(Buffer.alloc(32, 1), { pseudonymizeIps: false })
    assert.equal(clear.ip('192.0.2.1'), '192.0.2.1')
  })

  it('refuses details over 8192 bytes of canonical JSON, counted in UTF-8 bytes', () => {
    const p = new Pseudonymizer(Buffer.alloc(32, 1), { pseudonymizeIps: false })
    const withNote = (note: string) =>
      toRecord(event(1, { details: { note } }), p, new Date(Date.UTC(2026, 0, 2)))
    // {"note":"…"} is 11 bytes around the note.
    assert.doesNotThrow(() => withNote('a'.repeat(8192 - 11)))
    assert.throws(() => withNote('a'.repeat(8192 - 10)), { name: 'InvalidEventError' })
    // 'é' is 2 bytes: 4,090 of them (8,180 bytes) fit, 4,091 (8,182 bytes, 4,102 characters) do not.
    assert.doesNotThrow(() => withNote('é'.repeat(4090)))
    assert.throws(() => withNote('é'.repeat(4091)), { name: 'InvalidEventError' })
  })

  it('query columns come from the body, whatever the writer passes; leaves hash the body', async () => {
    await f.audit.sink.record(event(7, { tenant: 'cols', correlationId: 'corr-cols-1' }))
    await f.audit.sequencer.drain()
    const { rows } = await f.db.query<{
      type: string
      correlation_id: string
      outcome: string
      action: string
      actor_id: string
      time: string
      body: string
      leaf_hash: Buffer
    }>(
      `SELECT type, correlation_id, outcome, action, actor_id, time, body, leaf_hash
       FROM audit.events WHERE log = 'cols'`,
    )
    const real = rows[0]!
    const body = JSON.parse(real.body)
    assert.deepEqual(
      [real.type, real.correlation_id, real.outcome, real.action, real.actor_id, real.time],
      [body.type, 'corr-cols-1', body.outcome, body.action, body.actor.id, body.time],
    )
    // The sequencer's leaf hash, computed by the database, is RFC 6962's over the body's bytes.
    assert.ok(real.leaf_hash.equals(leafHash(Buffer.from(real.body, 'utf8'))))
    // A writer that passes its own values for the query columns gets the body's instead (rolled
    // back afterwards: the row is not a valid leaf of any log).
    const rollback = new Error('rollback')
    await assert.rejects(
      f.db.transaction(
        async (tx) => {
          await tx.query(
            `INSERT INTO audit.events (log, idx, body, leaf_hash, root, type, correlation_id, outcome)
             VALUES ('cols-forged', 0, $1, '\\x00', '\\x00', 'forged', 'corr-forged', 'success')`,
            [
              JSON.stringify({
                type: 'auth.login',
                correlationId: 'corr-real',
                outcome: 'failure',
              }),
            ],
          )
          await tx.query('RESET ROLE') // the sequencer may insert events, not read them
          const forged = await tx.query<{ type: string; correlation_id: string; outcome: string }>(
            "SELECT type, correlation_id, outcome FROM audit.events WHERE log = 'cols-forged'",
          )
          assert.deepEqual(forged.rows, [
            { type: 'auth.login', correlation_id: 'corr-real', outcome: 'failure' },
          ])
          throw rollback
        },
        { role: 'dflare_audit_sequencer' },
      ),
      (err) => err === rollback,
    )
  })

  it('a closed database makes record reject (the caller action fails)', async () => {
    const g = await auditFixture()
    await g.t.close()
    try {
      await assert.rejects(g.audit.sink.record(event(1)))
    } finally {
      await g.audit.sink.close()
      await rm(g.home, { recursive: true, force: true })
    }
  })
})

describe('audit verify: tampering through an owner connection is named', () => {
  let f: AuditFixture
  const N = 1100
  const logs = [
    'clean',
    'edit',
    'rehash',
    'delete',
    'swap',
    'insert',
    'trunc',
    'rewrite',
    'head',
    'cp',
  ]
  before(async () => {
    f = await auditFixture()
    for (const tenant of logs) {
      await recordMany(f.audit, 1000, { tenant })
      await f.audit.checkpoints.issue(tenant)
      await Promise.all(
        Array.from({ length: N - 1000 }, (_, i) =>
          f.audit.sink.record(event(1000 + i, { tenant })),
        ),
      )
    }
  })
  after(() => f.close())

  const reportOf = async (log: string) => (await verifyDatabase(f.db, { logs: [log] })).logs[0]!

  it('a clean log verifies', async () => {
    const r = await reportOf('clean')
    assert.ok(r.ok)
    assert.equal(r.ok && r.size, N)
  })

  it('an edited event is named', async () => {
    await tamper(f, [
      'UPDATE audit.events SET body = replace(body, \'"outcome":"denied"\', \'"outcome":"success"\') WHERE log = \'edit\' AND idx = 1005',
    ])
    assert.deepEqual(await reportOf('edit'), {
      log: 'edit',
      ok: false,
      firstBadIndex: 1005,
      reason: 'event 1005 does not match its leaf hash',
    })
  })

  it('an edited event with a recomputed leaf hash is named', async () => {
    const { rows } = await f.db.query<{ body: string }>(
      "SELECT body FROM audit.events WHERE log = 'rehash' AND idx = 77",
    )
    const forged = rows[0]!.body.replace('"outcome":"success"', '"outcome":"failure"')
    await tamper(f, [
      "UPDATE audit.events SET body = $1, leaf_hash = $2 WHERE log = 'rehash' AND idx = 77",
      [forged, leafHash(Buffer.from(forged))],
    ])
    const r = await reportOf('rehash')
    assert.equal(!r.ok && r.firstBadIndex, 77)
  })

  it('a deleted event is named', async () => {
    await tamper(f, ["DELETE FROM audit.events WHERE log = 'delete' AND idx = 640"])
    const r = await reportOf('delete')
    assert.equal(!r.ok && r.firstBadIndex, 640)
  })

  it('two swapped events are named at the first', async () => {
    await tamper(
      f,
      ["UPDATE audit.events SET idx = 999999 WHERE log = 'swap' AND idx = 300"],
      ["UPDATE audit.events SET idx = 300 WHERE log = 'swap' AND idx = 1030"],
      ["UPDATE audit.events SET idx = 1030 WHERE log = 'swap' AND idx = 999999"],
    )
    const r = await reportOf('swap')
    assert.equal(!r.ok && r.firstBadIndex, 300)
  })

  it('an inserted event is named', async () => {
    const body = canonicalBytes(
      toRecord(
        event(9, { tenant: 'insert' }),
        new Pseudonymizer(Buffer.alloc(32), { pseudonymizeIps: false }),
        new Date(),
      ),
    ).toString()
    // Shift everything from 900 up by one and slip a forged event in at 900.
    await tamper(
      f,
      ["UPDATE audit.events SET idx = idx + 1000000 WHERE log = 'insert' AND idx >= 900"],
      ["UPDATE audit.events SET idx = idx - 999999 WHERE log = 'insert' AND idx >= 1000000"],
      [
        "INSERT INTO audit.events (log, idx, body, leaf_hash, root) VALUES ('insert', 900, $1, $2, $3)",
        [body, leafHash(Buffer.from(body)), Buffer.alloc(32)],
      ],
    )
    const r = await reportOf('insert')
    assert.equal(!r.ok && r.firstBadIndex, 900)
  })

  it('removing the newest events is named', async () => {
    await tamper(f, ["DELETE FROM audit.events WHERE log = 'trunc' AND idx >= 1090"])
    const r = await reportOf('trunc')
    assert.equal(!r.ok && r.firstBadIndex, 1090)
  })

  it('a rewrite that forges every hash is caught by the signed checkpoint', async () => {
    // Recompute leaf hashes and roots for a forged history from 200 on, and the head too: only
    // the checkpoint signed at size 1000 still remembers the truth.
    const { rows } = await f.db.query<{ idx: number; body: string }>(
      "SELECT idx, body FROM audit.events WHERE log = 'rewrite' ORDER BY idx",
    )
    const { Frontier } = await import('../../src/audit/merkle.ts')
    const fr = new Frontier()
    const updates: [string, unknown[]][] = []
    for (const r of rows) {
      const body =
        r.idx >= 200 ? r.body.replace('"outcome":"denied"', '"outcome":"success"') : r.body
      const h = leafHash(Buffer.from(body))
      fr.append(h)
      if (r.idx >= 200)
        updates.push([
          "UPDATE audit.events SET body = $1, leaf_hash = $2, root = $3 WHERE log = 'rewrite' AND idx = $4",
          [body, h, fr.root(), r.idx],
        ])
    }
    updates.push([
      "UPDATE audit.heads SET root = $1, frontier = $2 WHERE log = 'rewrite'",
      [fr.root(), Buffer.concat(fr.hashes)],
    ])
    await tamper(f, ...updates)
    const r = await reportOf('rewrite')
    assert.equal(r.ok, false)
    assert.ok(
      !r.ok && r.firstBadIndex <= 200 && /signed checkpoint at size 1000/.test(r.reason),
      JSON.stringify(r),
    )
  })

  it('a forged head is detected', async () => {
    await tamper(f, ["UPDATE audit.heads SET root = $1 WHERE log = 'head'", [Buffer.alloc(32)]])
    const r = await reportOf('head')
    assert.equal(r.ok, false)
  })

  it('a forged checkpoint signature is detected', async () => {
    await tamper(f, [
      "UPDATE audit.checkpoints SET note = replace(note, '\n1000\n', '\n1001\n') WHERE log = 'cp'",
    ])
    const r = await reportOf('cp')
    assert.ok(!r.ok && /does not verify/.test(r.reason))
  })
})
