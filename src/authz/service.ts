/** Assembles the authorization service: entity cache, policy sets, PDP and policy admin. */
import type { Logger } from 'pino'
import { Counter, Histogram, type Registry } from 'prom-client'
import type { Clock } from '../core/clock.ts'
import type { Db } from '../core/db/index.ts'
import { PolicyAdmin } from './admin.ts'
import { type Consistency, EntityCache } from './cache.ts'
import { createPdp, RecentRequests } from './pdp.ts'
import { PolicySets } from './policysets.ts'
import { StoreWriter } from './writer.ts'

export interface AuthzOptions {
  db: Db
  clock: Clock
  log?: Logger
  consistency?: Consistency
  recentRequests?: number
  /** Where decision counters and latencies are registered (the process registry). */
  metrics?: Registry
}

function instrument(pdp: ReturnType<typeof createPdp>, registry: Registry) {
  const decisions = new Counter({
    name: 'dflare_authz_decisions_total',
    help: 'Authorization decisions by outcome',
    labelNames: ['decision'] as const,
    registers: [registry],
  })
  const seconds = new Histogram({
    name: 'dflare_authz_decision_seconds',
    help: 'Time to decide one request, cache sync and entity loading included',
    buckets: [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1],
    registers: [registry],
  })
  const decide = pdp.decide
  const decideBatch = pdp.decideBatch
  pdp.decide = async (request) => {
    const end = seconds.startTimer()
    const d = await decide(request)
    end()
    decisions.inc({ decision: d.decision })
    return d
  }
  pdp.decideBatch = async (requests) => {
    const ds = await decideBatch(requests)
    for (const d of ds) decisions.inc({ decision: d.decision })
    return ds
  }
}

export function createAuthzService(options: AuthzOptions) {
  const cache = new EntityCache(options.db, options.consistency ?? 'strong')
  const admin = new PolicyAdmin(options.db)
  const sets = new PolicySets(cache, admin)
  const recent = new RecentRequests(options.recentRequests ?? 1000)
  const pdp = createPdp({ cache, sets, clock: options.clock, log: options.log, recent })
  const writer = new StoreWriter()
  if (options.metrics) instrument(pdp, options.metrics)
  return {
    cache,
    admin,
    sets,
    recent,
    pdp,
    writer,
    /** Subscribes to change notifications; decisions before start read the database directly. */
    start: () => cache.start(),
    stop: () => cache.stop(),
    dryRun: (tenant: string, text: string) => admin.dryRun(pdp, sets, recent, tenant, text),
  }
}

export type AuthzService = ReturnType<typeof createAuthzService>
