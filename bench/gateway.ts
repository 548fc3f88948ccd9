/**
 * Gateway overhead. The real control plane (as `dflare up` composes it) runs in a child process;
 * one Fastify instance, one TLS listener, serves both
 * - `bare`: a route that runs the API's list handler itself (a read-only transaction as
 *   `dflare_app` with `dflare.tenant` set, the same response schema) and nothing else,
 * - `audited`: the bare route plus one durable audit event through the real sink (what the
 *   audit log alone costs: `auditedRatio` bounds what any pipeline with a durable event per
 *   request can reach on the machine), and
 * - `pipeline`: `GET /api/v1/tenants/bench/clusters?limit=10` through the full gateway: JWT
 *   verification with the IAM verifier (keys, claims, revocation by jti), realm checks, rate
 *   limits, the PDP, all strongly consistent (optimistic: validated with the read's BEGIN), the
 *   same read, and one audit event durably queued (group commit) before the response leaves.
 * autocannon drives each from this process over loopback, at each concurrency level in turn.
 * Server CPU per request (child process only; the database server is not included) is reported
 * as well: it is steadier than req/s on a shared machine.
 *
 *   npm run bench -- gateway --json [--seconds=8] [--connections=2,4,8,32] [--profile=DIR]
 *     [--no-audited]
 *
 * PostgreSQL when DFLARE_TEST_DATABASE_URL or DATABASE_URL is set (a fresh database is created
 * on that server and dropped afterwards), else embedded PGlite (`engine` says which).
 * `--profile=DIR` writes a V8 CPU profile of the server process during each run
 * (`DIR/{bare,pipeline}-<connections>.cpuprofile`, for Chrome DevTools).
 */
import { type ChildProcess, fork } from 'node:child_process'
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

async function usage(child: ChildProcess) {
  const u = await ask<NodeJS.CpuUsage & { statements: number }>(child, { cpu: true }, 'cpu')
  const own = process.cpuUsage()
  return {
    cpuMs: (u.user + u.system) / 1000,
    statements: u.statements,
    loadMs: (own.user + own.system) / 1000,
    postgresMs: postgresCpuMs(),
  }
}

const perRequest = (ms: number, n: number) => Math.round((ms / n) * 1000) / 1000

async function drive(
  child: ChildProcess,
  url: string,
  headers: Record<string, string>,
  seconds: number,
  connections: number,
  embedded: boolean,
) {
  const before = await usage(child)
  const r = await autocannon({ url, headers, duration: seconds, connections, pipelining: 1 })
  const after = await usage(child)
  const n = Math.max(1, r.requests.total)
  return {
    requestsPerSecond: Math.round(r.requests.average),
    p50Ms: r.latency.p50,
    p90Ms: r.latency.p90,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
    serverCpuMsPerRequest: perRequest(after.cpuMs - before.cpuMs, n),
    // PostgreSQL's own CPU (every server process on this machine; omitted on PGlite).
    ...(before.postgresMs !== undefined && after.postgresMs !== undefined && !embedded
      ? { postgresCpuMsPerRequest: perRequest(after.postgresMs - before.postgresMs, n) }
      : {}),
    // autocannon's (this process): the load generator shares the machine.
    loadGeneratorCpuMsPerRequest: perRequest(after.loadMs - before.loadMs, n),
    // Statements sent to PostgreSQL per request (each a round trip; 0 on PGlite).
    dbStatementsPerRequest: Math.round(((after.statements - before.statements) / n) * 100) / 100,
  }
}

export default async function (args: string[]) {
  const seconds = Number(arg(args, 'seconds') ?? 8)
  const levels = (arg(args, 'connections') ?? '2,4,8,32').split(',').map(Number)
  const profile = arg(args, 'profile')
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
    // Warm up both paths (JIT, caches, pool connections).
    await drive(child, ready.bare, {}, 2, levels[0]!, embedded)
    await drive(child, ready.pipeline, auth, 2, levels[0]!, embedded)
    const started = await ask<{ auditEvents: number }>(child, { stats: true }, 'stats')
    const runs = []
    let auditedRequests = 0
    for (const connections of levels) {
      const load = loadavg()[0]
      if (profile) await ask(child, { profileStart: true }, 'profiling')
      const bare = await drive(child, ready.bare, {}, seconds, connections, embedded)
      const audited = withAudited
        ? await drive(child, ready.audited, {}, seconds, connections, embedded)
        : undefined
      if (profile)
        await ask(
          child,
          { profileStop: join(profile, `bare-${connections}.cpuprofile`) },
          'profiled',
        )
      if (profile) await ask(child, { profileStart: true }, 'profiling')
      const pipeline = await drive(child, ready.pipeline, auth, seconds, connections, embedded)
      if (profile)
        await ask(
          child,
          { profileStop: join(profile, `pipeline-${connections}.cpuprofile`) },
          'profiled',
        )
      auditedRequests += pipeline.requests + (audited?.requests ?? 0)
      runs.push({
        connections,
        loadAverageAtStart: Math.round(load * 100) / 100,
        bare,
        ...(audited ? { audited } : {}),
        pipeline,
        ratio: Math.round((pipeline.requestsPerSecond / bare.requestsPerSecond) * 100) / 100,
        ...(audited
          ? {
              auditedRatio:
                Math.round((audited.requestsPerSecond / bare.requestsPerSecond) * 100) / 100,
            }
          : {}),
        cpuRatio:
          Math.round((bare.serverCpuMsPerRequest / pipeline.serverCpuMsPerRequest) * 100) / 100,
        targetMet:
          pipeline.requestsPerSecond >= bare.requestsPerSecond / 2 &&
          pipeline.p99Ms < 10 &&
          pipeline.non2xx === 0 &&
          pipeline.errors === 0,
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
      pipelining: 1,
      principal: 'tenant service account (client-credentials access token, RS256)',
      runs,
      // One audit event per pipeline and audited request: the measured ones, plus those still in
      // flight when a run's clock stopped (autocannon does not count them; at most `connections`).
      auditEventsWritten: ended.auditEvents - started.auditEvents,
      auditedRequestsMeasured: auditedRequests,
      loadAverageAtEnd: Math.round(loadavg()[0] * 100) / 100,
      target: { ratioAtLeast: 0.5, p99MsBelow: 10 },
    }
  } finally {
    child.send({ stop: true })
    await new Promise((r) => child.once('exit', r))
  }
}
