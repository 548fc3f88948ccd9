// Plan and apply N tenants (default 1,000) on embedded PGlite and on PostgreSQL, then verify all.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { systemClock } from '../src/core/clock.ts'
import { type Db, migrate, openDb } from '../src/core/db/index.ts'
import { coreMigrations } from '../src/core/migrations.ts'
import { createDrivers } from '../src/isolation/drivers/index.ts'
import { LOCAL_OPERATOR, localOperatorPdp } from '../src/isolation/local.ts'
import { isolationMigrations } from '../src/isolation/migrations.ts'
import { DEFAULT_POOLS } from '../src/isolation/pools.ts'
import { type IsolationConfig, IsolationService } from '../src/isolation/service.ts'

const PG_URL = process.env.DFLARE_BENCH_DATABASE_URL ?? 'postgres://root@127.0.0.1:5432/test'

function spec(i: number) {
  const name = `tenant-${i}`
  return {
    apiVersion: 'dflare.dev/v1',
    kind: 'TenantIsolation',
    networks: [
      { name: 'compute', cidr: `10.${i >> 8}.${i & 255}.0/24` },
      { name: 'storage', cidr: `10.${64 + (i >> 8)}.${i & 255}.0/24` },
    ],
    hostPorts: [0, 1].map((k) => ({
      host: `${name}-gpu${k}`,
      network: 'compute',
      switch: `leaf${(i * 2 + k) % 32}`,
      port: `swp${(i * 2 + k) % 64}-${i}`,
      guid: `0x0002c903${(i * 2 + k).toString(16).padStart(8, '0')}`,
    })),
    gpuQuota: 16,
    storage: {
      servicePorts: ['0x0002c90300ffff01'],
      exports: [{ name: 'data', path: `/exports/${name}`, access: 'rw', networks: ['storage'] }],
    },
    kubernetes: {
      clusters: ['k8s-a'],
      namespaces: [{ name: 'train', gpus: 8 }],
      groups: [{ group: 'admins', role: 'admin' }],
    },
    slurm: { clusters: ['hpc-a'], nodes: [`${name}-n1`], users: [`u${i}`], gpus: 8 },
    ingress: [{ cidr: '203.0.113.0/24', protocol: 'tcp', ports: [443] }],
  }
}

async function runOn(engine: string, db: Db, n: number) {
  await migrate(db, [coreMigrations, isolationMigrations])
  const dir = await mkdtemp(join(tmpdir(), 'dflare-bench-iso-'))
  const config: IsolationConfig = {
    pools: { default: DEFAULT_POOLS },
    quarantine: 86_400_000,
    asn: 65000,
    artifacts: dir,
    kubeconfig: undefined,
    sacctmgr: undefined,
    ufmUrl: undefined,
    ufmCredentials: undefined,
    applyLease: 120_000,
  }
  const service = new IsolationService({
    db,
    clock: systemClock,
    events: { record: async () => {} },
    pdp: localOperatorPdp,
    realmExists: async () => true,
    drivers: createDrivers(config),
    config,
  })
  try {
    let planMs = 0
    let applyMs = 0
    let steps = 0
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const a = performance.now()
      await service.plan(LOCAL_OPERATOR, `tenant-${i}`, { spec: spec(i) })
      const b = performance.now()
      const res = await service.apply(LOCAL_OPERATOR, `tenant-${i}`, { spec: spec(i) })
      applyMs += performance.now() - b
      planMs += b - a
      steps += res.executed
    }
    const total = performance.now() - t0
    const v0 = performance.now()
    const report = await service.verify(LOCAL_OPERATOR)
    const verifyMs = performance.now() - v0
    if (!report.ok) throw new Error(`verify found ${report.violations.length} violations`)
    return {
      engine,
      tenants: n,
      artifacts: steps,
      planAndApplyMs: Math.round(total),
      planMsPerTenant: +(planMs / n).toFixed(2),
      applyMsPerTenant: +(applyMs / n).toFixed(2),
      tenantsPerSecond: +((n / total) * 1000).toFixed(1),
      verifyMs: Math.round(verifyMs),
      identifiersChecked: report.identifiers,
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export default async function isolationBench(args: string[]) {
  const i = args.indexOf('--tenants')
  const n = i >= 0 ? Number(args[i + 1]) : 1000
  const results: Record<string, unknown>[] = []

  const dataDir = await mkdtemp(join(tmpdir(), 'dflare-bench-pglite-'))
  const lite = await openDb({ kind: 'pglite', dataDir })
  try {
    results.push(await runOn('pglite', lite, n))
  } finally {
    await lite.close()
    await rm(dataDir, { recursive: true, force: true })
  }

  const name = `dflare_bench_${randomBytes(4).toString('hex')}`
  try {
    const admin = new pg.Client({ connectionString: PG_URL })
    await admin.connect()
    await admin.query(`CREATE DATABASE ${name}`)
    await admin.end()
    const url = new URL(PG_URL)
    url.pathname = `/${name}`
    const db = await openDb({ kind: 'postgres', url: url.toString() })
    try {
      results.push(await runOn('postgres', db, n))
    } finally {
      await db.close()
    }
  } catch (err) {
    results.push({ engine: 'postgres', error: (err as Error).message })
  } finally {
    const admin = new pg.Client({ connectionString: PG_URL })
    await admin.connect().then(
      () => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => admin.end()),
      () => {},
    )
  }
  return { tenants: n, results }
}
