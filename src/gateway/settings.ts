import { defineSettings, parse } from '../core/config/index.ts'

export const gatewaySettings = defineSettings({
  principalRate: {
    env: 'DFLARE_RATE_LIMIT_PRINCIPAL',
    key: 'gateway.rateLimit.principal',
    doc: 'API requests one principal may make per minute; more get 429 with Retry-After.',
    allowed: 'integer 1..1000000',
    default: 600,
    parse: parse.int(1, 1_000_000),
  },
  tenantRate: {
    env: 'DFLARE_RATE_LIMIT_TENANT',
    key: 'gateway.rateLimit.tenant',
    doc: 'API requests all principals of one tenant may make per minute together.',
    allowed: 'integer 1..10000000',
    default: 6000,
    parse: parse.int(1, 10_000_000),
  },
  unauthenticatedRate: {
    env: 'DFLARE_RATE_LIMIT_UNAUTHENTICATED',
    key: 'gateway.rateLimit.unauthenticated',
    doc: 'Failed-authentication API requests one source IP may make per minute.',
    allowed: 'integer 1..1000000',
    default: 120,
    parse: parse.int(1, 1_000_000),
  },
  optimisticReads: {
    env: 'DFLARE_GATEWAY_OPTIMISTIC_READS',
    key: 'gateway.optimisticReads',
    doc: 'Serve reads optimistically: their checks use the in-memory state without first reading its revision, validated before the response leaves (a stale check is redone strictly). false reads the revision first, as writes always do.',
    allowed: 'true or false',
    default: true,
    parse: parse.bool(),
  },
})
