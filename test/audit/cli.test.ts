import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { BackupService } from '../../src/audit/backup.ts'
import { createAudit } from '../../src/audit/component.ts'
import { auditMigrations } from '../../src/audit/migrations.ts'
import { openCheckpoint } from '../../src/audit/note.ts'
import { verifyDatabase } from '../../src/audit/tools.ts'
import { ManualClock } from '../../src/core/clock.ts'
import { type Db, lockDataDir, migrate, openDb } from '../../src/core/db/index.ts'
import { coreMigrations } from '../../src/core/migrations.ts'
import { DirectoryObjectStore } from '../../src/core/objects/index.ts'
import { freshDatabase, type TestDatabase, testDatabaseUrl } from '../support/db.ts'
import { event, runtimeFor } from './helpers.ts'
import { MemoryObjectStore } from './memory-store.ts'
import { verifyConsistency } from './rfc6962.ts'

const MAIN = fileURLToPath(new URL('../../bin/dflare.js', import.meta.url))
const b64 = (s: string) => Buffer.from(s, 'base64')

/** A database that survives closing: PGlite in $DFLARE_HOME/data, or a PostgreSQL database. */
let home: string
let pg: TestDatabase | undefined
const open = (): Promise<Db> =>
  pg
    ? openDb({ kind: 'postgres', url: pg.url! })
    : openDb({ kind: 'pglite', dataDir: join(home, 'data') })

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const db = pg ? ['--database', pg.url!] : []
  const withDb =
    ['verify', 'query', 'export'].includes(args[1]!) &&
    !args.includes('--file') &&
    !args.includes('--store')
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args, ...(withDb ? db : [])],
      {
        env: { PATH: process.env.PATH, DFLARE_HOME: home, DFLARE_AUDIT_ORIGIN: 'audit.test/log' },
        cwd: home,
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })
}

async function withAudit<T>(
  fn: (a: Awaited<ReturnType<typeof createAudit>>, db: Db) => Promise<T>,
) {
  const db = await open()
  try {
    const audit = await createAudit(
      runtimeFor(db, home, new MemoryObjectStore(), new ManualClock()),
    )
    const out = await fn(audit, db)
    await audit.sink.close()
    await audit.sequencer.stop()
    return out
  } finally {
    await db.close()
  }
}

describe('dflare audit CLI and restarts', () => {
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'dflare-audit-cli-'))
    if (testDatabaseUrl) pg = await freshDatabase()
    const db = await open()
    await migrate(db, [coreMigrations, auditMigrations])
    await db.close()
  })
  after(async () => {
    await pg?.close()
    await rm(home, { recursive: true, force: true })
  })

  it('keeps history consistent across a restart (consistency proof between checkpoints)', async () => {
    const cp1 = await withAudit(async (audit) => {
      for (let i = 0; i < 300; i++) await audit.sink.record(event(i))
      return audit.checkpoints.issue('acme')
    })
    const { cp2, proof, keys } = await withAudit(async (audit) => {
      await Promise.all(Array.from({ length: 200 }, (_, i) => audit.sink.record(event(300 + i))))
      const cp2 = await audit.checkpoints.issue('acme')
      const proof = await audit.proofs.consistency('acme', cp1.size, cp2.size)
      return { cp2, proof, keys: await audit.keys.verifierKeys() }
    })
    assert.equal(keys.length, 1, 'the signing key survives the restart')
    const a = openCheckpoint(cp1.note, keys)
    const b = openCheckpoint(cp2.note, keys)
    assert.deepEqual([a.size, b.size], [300, 500])
    assert.ok(verifyConsistency(a.size, b.size, a.root, b.root, proof.proof.map(b64)))
  })

  it('never opens an embedded database another process is using (exit 2, nothing read)', {
    skip: !!testDatabaseUrl && 'the embedded database only',
  }, async () => {
    // This test process stands for a running `dflare up`.
    const release = lockDataDir(join(home, 'data'))
    try {
      for (const args of [
        ['audit', 'query', '--json'],
        ['audit', 'verify'],
      ]) {
        const r = await cli(...args)
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
        assert.match(r.stderr, new RegExp(`in use by process ${process.pid}`))
        assert.equal(r.stdout, '')
      }
    } finally {
      release()
    }
  })

  it('verify exits 0 on a clean log, with a JSON report', async () => {
    const r = await cli('audit', 'verify', '--json')
    assert.equal(r.code, 0, r.stderr)
    const report = JSON.parse(r.stdout)
    assert.equal(report.ok, true)
    assert.deepEqual(
      report.logs.map((l: { log: string; size: number }) => [l.log, l.size]),
      [['acme', 500]],
    )
  })

  it('query filters by correlation id (and records the read)', async () => {
    const r = await cli('audit', 'query', '--correlation-id', 'cid-42', '--json')
    assert.equal(r.code, 0, r.stderr)
    const page = JSON.parse(r.stdout)
    assert.deepEqual(
      page.events.map((e: { index: number }) => e.index),
      [42],
    )
    const csv = await cli(
      'audit',
      'query',
      '--log',
      'acme',
      '--outcome',
      'denied',
      '--format',
      'csv',
    )
    assert.equal(csv.code, 0, csv.stderr)
    assert.equal(csv.stdout.trim().split('\r\n').length, 101)
  })

  it('an export verifies on its own, and a tampered export names the index', async () => {
    const file = join(home, 'export.ndjson')
    const e = await cli('audit', 'export', '--out', file)
    assert.equal(e.code, 0, e.stderr)
    const vkey = (await readFile(file, 'utf8')).split('\n')[1]!
    const pinned = JSON.parse(vkey).vkey as string
    const ok = await cli('audit', 'verify', '--file', file, '--key', pinned)
    assert.equal(ok.code, 0, ok.stdout + ok.stderr)
    const lines = (await readFile(file, 'utf8')).split('\n')
    const at = lines.findIndex((l) => l.includes('"index":123,'))
    lines[at] = lines[at]!.replace('cid-123', 'cid-999')
    await writeFile(join(home, 'forged.ndjson'), lines.join('\n'))
    const bad = await cli('audit', 'verify', '--file', join(home, 'forged.ndjson'), '--key', pinned)
    assert.equal(bad.code, 1)
    assert.match(bad.stdout, /acme: FAILED at index 123/)
  })

  it('verifies the object-storage backup alone (directory store)', async () => {
    const dir = join(home, 'objects')
    const sealed = await withAudit(async (audit, db) => {
      const store = await new DirectoryObjectStore(dir).init()
      const backup = new BackupService({
        db,
        objects: store,
        keys: audit.keys,
        checkpoints: audit.checkpoints,
        retentionMs: 86_400_000,
        clock: new ManualClock(Date.now()),
      })
      return backup.seal()
    })
    assert.ok(sealed.some((s) => s.log === 'acme' && s.first === 0))
    const r = await cli('audit', 'verify', '--store', dir, '--json')
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.ok(
      JSON.parse(r.stdout).logs.some((l: { log: string; ok: boolean }) => l.log === 'acme' && l.ok),
    )
  })

  it('tampering through an owner connection makes verify exit 1 naming the index', async () => {
    const db = await open()
    try {
      await db.transaction(async (tx) => {
        await tx.query('SET LOCAL session_replication_role = replica')
        await tx.query("DELETE FROM audit.events WHERE log = 'acme' AND idx = 321")
      })
      assert.equal((await verifyDatabase(db)).ok, false)
    } finally {
      await db.close()
    }
    const r = await cli('audit', 'verify')
    assert.equal(r.code, 1)
    assert.match(r.stdout, /acme: FAILED at index 321: event 321 is missing/)
  })

  it('usage errors exit 2', async () => {
    assert.equal((await cli('audit', 'verify', '--file', 'x', '--store', 'y')).code, 2)
    assert.equal((await cli('audit', 'query', '--outcome', 'maybe')).code, 2)
  })
})
