/**
 * Gateway overhead. The real control plane (as `dflare up` composes it) runs in a child process;
 * one Fastify instance, one TLS listener, serves four targets:
 * - `bare`: a route that runs the API's list handler itself (a read-only transaction as
 *   `dflare_app` with `dflare.tenant` set, the same response schema) and nothing else,
 * - `durable`: the bare route plus one row inserted by an autocommit statement, no audit code:
 *   the cheapest durable record of a request (its own WAL flush). Where requests seldom overlap
 *   (few connections), so that flushes cannot be shared, `durableRatio` bounds what any design
 *   that makes something durable in the database before each response can reach on the machine,
 * - `audited`: the bare route plus one durable audit event through the real sink by group commit
 *   (how a read the gateway could not hold is audited), and
 * - `pipeline`: `GET /api/v1/tenants/bench/clusters?limit=10` through the full gateway: JWT
 *   verification with the IAM verifier (keys, claims, revocation by jti), realm checks, rate
 *   limits, the PDP, all strongly consistent (optimistic: validated with the read's BEGIN), the
 *   same read, and one audit event committed with it (a held read: core/db/held-read.ts; on
 *   PGlite, which holds no reads, by group commit) before
 *   the response leaves.
 * autocannon drives each from this process over loopback, at each concurrency level in turn; at
 * each level the targets take turns in `--slices` slices (default 4, `--seconds` split between
 * them), and each target's figures are over all of its slices (latency percentiles from every
 * response's time).
 * CPU per request is reported as well, steadier than req/s on a shared machine: the server
 * process's, PostgreSQL's (every server process on this machine, so only with a local server)
 * and the load generator's (this process). So are the server's garbage collection pauses (how
 * many per second, their total per second and the longest), which stop its event loop and so
 * shape the latency tail.
 *
 *   npm run bench -- gateway --json [--seconds=8] [--slices=4] [--connections=2,4,8,32]
 *     [--profile=DIR] [--no-durable] [--no-audited]
 *
 * PostgreSQL when DFLARE_TEST_DATABASE_URL or DATABASE_URL is set (a fresh database is created
 * on that server and dropped afterwards), else embedded PGlite (`engine` says which).
 * `--profile=DIR` writes a V8 CPU profile and a sampling heap profile (every allocation, also
 * those that die young) of the server process during each target's run
 * (`DIR/{bare,durable,audited,pipeline}-<connections>.{cpuprofile,heapprofile}`, for Chrome
 * DevTools; one slice each). The server inherits this process's V8 flags:
 * `node --trace-gc-nvp bench/run.ts gateway …` prints each collection's pause and promoted bytes.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { postgresCpuMs } from './support/postgres-cpu.ts'

function arg(args: string[], name: string): string | undefined {
  return args.find((x) => x.startsWith(`--${name}=`))?.split('=')[1]
}

interface Ready {
  engine: 'postgres' | 'pglite'
  ca: string
  token: string
  bare: string
  durable: string
  audited: string
  pipeline: string
}

function ask<T>(child: ChildProcess, message: object, key: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: Record<string, unknown>) => {
      if (!(key in m)) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(m[key] as T)
    }
    const onExit = (code: number) => reject(new Error(`bench server exited (${code})`))
    child.on('message', onMessage)
    child.once('exit', onExit)
    if (Object.keys(message).length > 0) child.send(message)
  })
}

interface ServerUsage extends NodeJS.CpuUsage {
  statements: number
  /** GC pauses so far (count, total ms) and the longest since the previous ask. */
  gc: { count: number; ms: number; maxMs: number }
}

async function usage(child: ChildProcess) {
  const u = await ask<ServerUsage>(child, { cpu: true }, 'cpu')
  const own = process.cpuUsage()
  return {
    cpuMs: (u.user + u.system) / 1000,
    statements: u.statements,
    gc: u.gc,
    loadMs: (own.user + own.system) / 1000,
    postgresMs: postgresCpuMs(),
  }
}

/** The latency bound for the pipeline. */
const P99_BOUND_MS = 10

const perRequest = (ms: number, n: number) => Math.round((ms / n) * 1000) / 1000

/** The q-quantile of sorted values (nearest rank). */
function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}

/** One target's requests, latencies and CPU over all of its slices at one level. */
class Tally {
  readonly latencies: number[] = []
  requests = 0
  seconds = 0
  non2xx = 0
  errors = 0
  serverMs = 0
  postgresMs: number | undefined = 0
  loadMs = 0
  statements = 0
  gcPauses = 0
  gcMs = 0
  gcMaxMs = 0

  /** Drives `url` for `seconds` and adds the slice. */
  async slice(
    child: ChildProcess,
    url: string,
    headers: Record<string, string>,
    seconds: number,
    connections: number,
  ) {
    const before = await usage(child)
    const r = await new Promise<autocannon.Result>((resolve, reject) => {
      const instance = autocannon(
        { url, headers, duration: seconds, connections, pipelining: 1 },
        (err, result) => (err ? reject(err) : resolve(result)),
      )
      instance.on('response', (_client, _status, _bytes, ms) => this.latencies.push(ms))
    })
    const after = await usage(child)
    this.requests += r.requests.total
    this.seconds += r.duration
    this.non2xx += r.non2xx
    this.errors += r.errors
    this.serverMs += after.cpuMs - before.cpuMs
    this.loadMs += after.loadMs - before.loadMs
    this.statements += after.statements - before.statements
    this.gcPauses += after.gc.count - before.gc.count
    this.gcMs += after.gc.ms - before.gc.ms
    this.gcMaxMs = Math.max(this.gcMaxMs, after.gc.maxMs)
    this.postgresMs =
      this.postgresMs !== undefined &&
      before.postgresMs !== undefined &&
      after.postgresMs !== undefined
        ? this.postgresMs + after.postgresMs - before.postgresMs
        : undefined
  }

  report(embedded: boolean) {
    const sorted = this.latencies.sort((a, b) => a - b)
    const n = Math.max(1, this.requests)
    const ms = (v: number) => Math.round(v * 100) / 100
    return {
      requestsPerSecond: Math.round(this.requests / Math.max(this.seconds, 1e-9)),
      p50Ms: ms(quantile(sorted, 0.5)),
      p90Ms: ms(quantile(sorted, 0.9)),
      p99Ms: ms(quantile(sorted, 0.99)),
      maxMs: ms(sorted[sorted.length - 1] ?? 0),
      requests: this.requests,
      non2xx: this.non2xx,
      errors: this.errors,
      serverCpuMsPerRequest: perRequest(this.serverMs, n),
      // PostgreSQL's own CPU (every server process on this machine; omitted on PGlite).
      ...(this.postgresMs !== undefined && !embedded
        ? { postgresCpuMsPerRequest: perRequest(this.postgresMs, n) }
        : {}),
      // autocannon's (this process): the load generator shares the machine.
      loadGeneratorCpuMsPerRequest: perRequest(this.loadMs, n),
      // Statements sent to PostgreSQL per request (each a round trip; 0 on PGlite).
      dbStatementsPerRequest: Math.round((this.statements / n) * 100) / 100,
      // The server's garbage collection pauses (the event loop stops for each).
      gcPausesPerSecond: Math.round(this.gcPauses / Math.max(this.seconds, 1e-9)),
      gcPauseMsPerSecond: ms(this.gcMs / Math.max(this.seconds, 1e-9)),
      gcMaxPauseMs: ms(this.gcMaxMs),
    }
  }
}

export default async function (args: string[]) {
  const seconds = Number(arg(args, 'seconds') ?? 8)
  const levels = (arg(args, 'connections') ?? '2,4,8,32').split(',').map(Number)
  const profile = arg(args, 'profile')
  if (profile) mkdirSync(profile, { recursive: true })
  // A CPU profile covers one slice per target: profiling runs each target once per level.
  const slices = profile ? 1 : Number(arg(args, 'slices') ?? 4)
  const withDurable = !args.includes('--no-durable')
  const withAudited = !args.includes('--no-audited')
  const databaseUrl = process.env.DFLARE_TEST_DATABASE_URL || process.env.DATABASE_URL
  const child = fork(new URL('./support/gateway-server.ts', import.meta.url), [], {
    env: {
      ...process.env,
      DFLARE_TEST_DATABASE_URL: databaseUrl ?? '',
      DATABASE_URL: '',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  try {
    const ready = await ask<Ready>(child, {}, 'ready')
    const auth = { authorization: `Bearer ${ready.token}` }
    const embedded = ready.engine === 'pglite'
    const targets = [
      { name: 'bare', url: ready.bare, headers: {} },
      ...(withDurable ? [{ name: 'durable', url: ready.durable, headers: {} }] : []),
      ...(withAudited ? [{ name: 'audited', url: ready.audited, headers: {} }] : []),
      { name: 'pipeline', url: ready.pipeline, headers: auth },
    ]
    // Warm up every path (JIT, caches, pool connections).
    for (const t of targets) await new Tally().slice(child, t.url, t.headers, 2, levels[0]!)
    const started = await ask<{ auditEvents: number }>(child, { stats: true }, 'stats')
    const runs = []
    let auditedRequests = 0
    for (const connections of levels) {
      const load = loadavg()[0]
      const tallies = new Map(targets.map((t) => [t.name, new Tally()]))
      // The targets take turns, slice by slice, so that the machine's slower and faster
      // moments (other tenants of the host, background work) fall on all of them alike.
      for (let i = 0; i < slices; i++)
        for (const t of targets) {
          if (profile) await ask(child, { profileStart: true }, 'profiling')
          await tallies.get(t.name)!.slice(child, t.url, t.headers, seconds / slices, connections)
          if (profile)
            await ask(
              child,
              { profileStop: join(profile, `${t.name}-${connections}.cpuprofile`) },
              'profiled',
            )
        }
      const bare = tallies.get('bare')!.report(embedded)
      const durable = tallies.get('durable')?.report(embedded)
      const audited = tallies.get('audited')?.report(embedded)
      const pipeline = tallies.get('pipeline')!.report(embedded)
      auditedRequests += pipeline.requests + (audited?.requests ?? 0)
      const ratio = (a: { requestsPerSecond: number }) =>
        Math.round((a.requestsPerSecond / bare.requestsPerSecond) * 100) / 100
      runs.push({
        connections,
        loadAverageAtStart: Math.round(load * 100) / 100,
        bare,
        ...(durable ? { durable } : {}),
        ...(audited ? { audited } : {}),
        pipeline,
        ratio: ratio(pipeline),
        ...(durable ? { durableRatio: ratio(durable) } : {}),
        ...(audited ? { auditedRatio: ratio(audited) } : {}),
        cpuRatio:
          Math.round((bare.serverCpuMsPerRequest / pipeline.serverCpuMsPerRequest) * 100) / 100,
        targetMet:
          pipeline.requestsPerSecond >= bare.requestsPerSecond / 2 &&
          pipeline.p99Ms < P99_BOUND_MS &&
          pipeline.non2xx === 0 &&
          pipeline.errors === 0,
        // With `connections` requests always in flight, the mean latency is connections /
        // throughput (Little's law): a pipeline at exactly half of bare's throughput takes, on
        // average, 2 × connections / bare's throughput per request, and its p99 lies above that
        // mean. Where the mean alone is at or over the bound, the two halves of the target
        // exclude each other at this level.
        targetReachable: (2 * connections * 1000) / bare.requestsPerSecond < P99_BOUND_MS,
      })
    }
    const ended = await ask<{ auditEvents: number }>(child, { stats: true }, 'stats')
    return {
      engine: ready.engine,
      ...(ready.engine === 'pglite'
        ? {
            note: 'DFLARE_TEST_DATABASE_URL / DATABASE_URL not set: embedded PGlite, not PostgreSQL',
          }
        : {}),
      seconds,
      slices,
      pipelining: 1,
      principal: 'tenant service account (client-credentials access token, RS256)',
      runs,
      // One audit event per pipeline and audited request: the measured ones, plus those still in
      // flight when a run's clock stopped (autocannon does not count them; at most `connections`).
      auditEventsWritten: ended.auditEvents - started.auditEvents,
      auditedRequestsMeasured: auditedRequests,
      loadAverageAtEnd: Math.round(loadavg()[0] * 100) / 100,
      target: { ratioAtLeast: 0.5, p99MsBelow: P99_BOUND_MS },
    }
  } finally {
    child.send({ stop: true })
    await new Promise((r) => child.once('exit', r))
  }
}
