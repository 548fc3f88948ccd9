import { defineSettings, parse } from '../core/config/index.ts'

export const authzSettings = defineSettings({
  consistency: {
    env: 'DFLARE_AUTHZ_CONSISTENCY',
    key: 'authz.consistency',
    doc: 'strong: every decision first checks the entity store revision (one tiny query), so a revoked binding never allows again; notify: rely on LISTEN/NOTIFY alone (staleness bounded by notification delay).',
    allowed: 'strong, notify',
    default: 'strong' as 'strong' | 'notify',
    parse: parse.oneOf(['strong', 'notify'] as const),
  },
  recentRequests: {
    env: 'DFLARE_AUTHZ_RECENT_REQUESTS',
    key: 'authz.recentRequests',
    doc: 'How many recent authorization requests per tenant are kept in memory (as JSON snapshots) for policy dry-runs.',
    allowed: 'integer 0..100000',
    default: 1000,
    parse: parse.int(0, 100_000),
  },
})
