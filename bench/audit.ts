// Audit log benchmark: durable appends/s (PostgreSQL and PGlite; one writer, many concurrent
// writers across tenant logs, writers appending inside their own transactions) and
// verification speed (leaves/s). `npm run bench -- audit --json`.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { appendLeaves, type Leaf } from '../src/audit/append.ts'
import { type Audit, createAudit } from '../src/audit/component.ts'
import { canonicalBytes, toRecord } from '../src/audit/event.ts'
import { Frontier, leafHash } from '../src/audit/merkle.ts'
import { auditMigrations } from '../src/audit/migrations.ts'
import { Pseudonymizer } from '../src/audit/pseudonym.ts'
import { verifyDatabase } from '../src/audit/tools.ts'
import { type LogEntry, verifyLog } from '../src/audit/verify.ts'
import { ManualClock, systemClock } from '../src/core/clock.ts'
import { type Db, migrate, openDb } from '../src/core/db/index.ts'
import type { SecurityEvent } from '../src/core/events.ts'
import { coreMigrations } from '../src/core/migrations.ts'
import { runtimeFor } from '../test/audit/helpers.ts'
import { MemoryObjectStore } from '../test/audit/memory-store.ts'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4)
const VERIFY_LEAVES = Number(process.env.BENCH_VERIFY_LEAVES ?? 1_000_000)

const sample = (i: number, tenant: string): SecurityEvent => ({
  type: 'api.request',
  tenant,
  actor: { kind: 'user', id: `u-${i % 1000}` },
  action: 'api:CreateProject',
  resource: { type: 'project', id: `p-${i}` },
  outcome: 'success',
  correlationId: `c-${i}-${randomBytes(8).toString('hex')}`,
  sourceIp: '10.0.0.1',
  userAgent: 'bench/1.0',
})

/** Runs `writers` loops for SECONDS, each awaiting one durable append at a time. */
async function throughput(writers: number, append: (i: number, w: number) => Promise<void>) {
  const end = performance.now() + SECONDS * 1000
  let n = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      while (performance.now() < end) await append(n++, w)
    }),
  )
  return Math.round(n / ((performance.now() - t0) / 1000))
}

async function appendFigures(db: Db, audit: Audit) {
  const tenants = Array.from({ length: 8 }, (_, i) => `bench-${i}`)
  return {
    singleWriter: await throughput(1, (i) => audit.sink.record(sample(i, 'bench-0'))),
    concurrentWriters256GroupCommit: await throughput(256, (i, w) =>
      audit.sink.record(sample(i, tenants[w % 8]!)),
    ),
    concurrentWriters16InCallerTx: await throughput(16, (i, w) =>
      db.transaction((tx) => audit.sink.record(sample(i, tenants[w % 8]!), tx), {
        role: 'dflare_app',
      }),
    ),
  }
}

async function withAudit<T>(db: Db, fn: (audit: Audit) => Promise<T>) {
  await migrate(db, [coreMigrations, auditMigrations])
  const home = await mkdtemp(join(tmpdir(), 'dflare-bench-'))
  const audit = await createAudit(runtimeFor(db, home, new MemoryObjectStore(), new ManualClock()))
  try {
    return await fn(audit)
  } finally {
    await audit.sink.close()
    await rm(home, { recursive: true, force: true })
  }
}

async function postgres() {
  const base = process.env.DFLARE_BENCH_DATABASE_URL || 'postgres://root@127.0.0.1:5432/test'
  const name = `dflare_bench_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: base })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  const url = new URL(base)
  url.pathname = `/${name}`
  const db = await openDb({ kind: 'postgres', url: url.toString() })
  try {
    return await withAudit(db, async (audit) => {
      const appends = await appendFigures(db, audit)
      // Grow one log to 200k leaves with bulk appends, then time verification from the database.
      const p = new Pseudonymizer(randomBytes(32), { pseudonymizeIps: false })
      const target = 200_000
      const { rows } = await db.query<{ size: number }>(
        "SELECT COALESCE((SELECT size FROM audit.heads WHERE log = 'bench-v'), 0) AS size",
      )
      for (let size = rows[0]!.size; size < target; size += 5000) {
        const leaves: Leaf[] = []
        for (let i = 0; i < 5000; i++) {
          const bytes = canonicalBytes(toRecord(sample(size + i, 'bench-v'), p, new Date()))
          leaves.push({ body: bytes.toString(), hash: leafHash(bytes) })
        }
        await db.transaction((tx) => appendLeaves(tx, 'bench-v', leaves))
      }
      const t0 = performance.now()
      const report = await verifyDatabase(db, { logs: ['bench-v'] })
      const s = (performance.now() - t0) / 1000
      if (!report.ok) throw new Error('verification failed')
      return {
        appendsPerSecond: appends,
        verifyFromDatabase: { leaves: target, leavesPerSecond: Math.round(target / s) },
      }
    })
  } finally {
    await db.close()
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end()
  }
}

async function pglite() {
  const dir = await mkdtemp(join(tmpdir(), 'dflare-bench-pglite-'))
  const db = await openDb({ kind: 'pglite', dataDir: dir })
  try {
    return { appendsPerSecond: await withAudit(db, (audit) => appendFigures(db, audit)) }
  } finally {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Verification of VERIFY_LEAVES leaves held in memory (an export's cost minus parsing). */
async function verifyInMemory() {
  const body = canonicalBytes(
    toRecord(
      sample(1, 'acme'),
      new Pseudonymizer(randomBytes(32), { pseudonymizeIps: false }),
      systemClock.now(),
    ),
  ).toString()
  const leaf = leafHash(Buffer.from(body))
  const f = new Frontier()
  const entries: LogEntry[] = []
  for (let i = 0; i < VERIFY_LEAVES; i++) {
    f.append(leaf)
    entries.push({
      index: i,
      body,
      leafHash: leaf,
      ...((i + 1) % 1024 === 0 || i === VERIFY_LEAVES - 1 ? { root: f.root() } : {}),
    })
  }
  async function* gen() {
    yield* entries
  }
  const t0 = performance.now()
  const report = await verifyLog({ log: 'acme', entries: gen(), checkpoints: [] }, [])
  const s = (performance.now() - t0) / 1000
  if (!report.ok) throw new Error('verification failed')
  return {
    leaves: VERIFY_LEAVES,
    seconds: Number(s.toFixed(2)),
    leavesPerSecond: Math.round(VERIFY_LEAVES / s),
  }
}

export default async function run(_args: string[]) {
  return {
    secondsPerScenario: SECONDS,
    postgres: await postgres(),
    pglite: await pglite(),
    verifyInMemory: await verifyInMemory(),
    targets: { durableEventsPerSecondPostgresConcurrent: 5000, verify1MillionSeconds: 15 },
  }
}
