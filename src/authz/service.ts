/** Assembles the authorization service: entity cache, policy sets, PDP and policy admin. */
import type { Logger } from 'pino'
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
}

export function createAuthzService(options: AuthzOptions) {
  const cache = new EntityCache(options.db, options.consistency ?? 'strong')
  const admin = new PolicyAdmin(options.db)
  const sets = new PolicySets(cache, admin)
  const recent = new RecentRequests(options.recentRequests ?? 1000)
  const pdp = createPdp({ cache, sets, clock: options.clock, log: options.log, recent })
  const writer = new StoreWriter()
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
