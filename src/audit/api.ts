import { Readable } from 'node:stream'
import { problems } from '../core/errors.ts'
import { PLATFORM_REALM } from '../gateway/authenticate.ts'
import { resourceUid, tenantUid } from '../gateway/principal.ts'
import { type AnyApiRoute, defineRoute, type ResourceRef } from '../gateway/route.ts'
import type { CheckpointService } from './checkpoints.ts'
import { LOG_NAME } from './event.ts'
import { csvHeader, csvRow, ndjsonRow } from './format.ts'
import type { KeyRing } from './keys.ts'
import type { ProofService } from './proofs.ts'
import type { EventFilter, QueryService } from './query.ts'

/**
 * The audit API as gateway routes (authenticate → Cedar `auditlog.read` / `auditlog.export` on
 * the tenant's `AuditLog` → handler → the gateway records the read in the tenant's log before
 * the response leaves). Tenant routes read only the log named in the path; `GET /audit/events`
 * (platform) reads every log, for platform principals allowed `auditlog.read` on the platform's
 * own audit log (security officer, platform admin).
 */
export interface AuditApiDeps {
  query: QueryService
  proofs: ProofService
  checkpoints: CheckpointService
  keys: KeyRing
}

const tenantParam = { type: 'string', pattern: LOG_NAME.source } as const
const index = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const
const tenantParams = {
  type: 'object',
  required: ['tenant'],
  properties: { tenant: tenantParam },
} as const

const filterProperties = {
  correlationId: { type: 'string', maxLength: 128 },
  actor: { type: 'string', maxLength: 256 },
  action: { type: 'string', maxLength: 256 },
  outcome: { type: 'string', enum: ['success', 'failure', 'denied', 'error'] },
  type: { type: 'string', maxLength: 128 },
  since: { type: 'string', format: 'date-time' },
  until: { type: 'string', format: 'date-time' },
} as const

type FilterQuery = {
  correlationId?: string
  actor?: string
  action?: string
  outcome?: EventFilter['outcome']
  type?: string
  since?: string
  until?: string
}

const eventSchema = {
  type: 'object',
  properties: {
    log: { type: 'string' },
    index: { type: 'integer' },
    event: { type: 'object', additionalProperties: true },
  },
} as const

function auditLog(tenant: string): ResourceRef {
  const uid = resourceUid('AuditLog', tenant, tenant)
  return {
    uid,
    tenant,
    entities: [{ uid, tenant, attrs: {}, parents: [tenantUid(tenant)] }],
  }
}

function filterOf(q: FilterQuery): Omit<EventFilter, 'allowed'> {
  return {
    ...(q.correlationId ? { correlationId: q.correlationId } : {}),
    ...(q.actor ? { actor: q.actor } : {}),
    ...(q.action ? { action: q.action } : {}),
    ...(q.outcome ? { outcome: q.outcome } : {}),
    ...(q.type ? { type: q.type } : {}),
    ...(q.since ? { since: new Date(q.since) } : {}),
    ...(q.until ? { until: new Date(q.until) } : {}),
  }
}

export function auditApiRoutes(deps: AuditApiDeps): AnyApiRoute[] {
  const tags = ['audit']
  const page = async (
    allowed: EventFilter['allowed'],
    q: FilterQuery & { log?: string; cursor?: string; limit: number },
  ) => {
    const p = await deps.query.events({
      allowed,
      ...filterOf(q),
      ...(q.log ? { log: q.log } : {}),
      ...(q.cursor ? { cursor: q.cursor } : {}),
      limit: q.limit,
    })
    return { body: p, audit: { filter: { ...filterOf(q), ...(q.log ? { log: q.log } : {}) } } }
  }
  const pageQuery = {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...filterProperties,
      cursor: { type: 'string', maxLength: 512 },
      limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    },
  } as const
  const pageResponse = {
    200: {
      type: 'object',
      properties: { events: { type: 'array', items: eventSchema }, nextCursor: { type: 'string' } },
    },
  }

  return [
    defineRoute<{ tenant: string }, FilterQuery & { cursor?: string; limit: number }>({
      method: 'GET',
      url: '/tenants/:tenant/audit/events',
      action: 'auditlog.read',
      summary: "Query the tenant's audit events",
      tags,
      schema: { params: tenantParams, querystring: pageQuery, response: pageResponse },
      resource: ({ tenant }) => auditLog(tenant),
      handler: ({ tenant, query }) => page([tenant], query),
    }),
    defineRoute<
      Record<string, never>,
      FilterQuery & { log?: string; cursor?: string; limit: number }
    >({
      method: 'GET',
      url: '/audit/events',
      action: 'auditlog.read',
      summary: 'Query the audit events of every log (platform principals)',
      tags,
      schema: {
        querystring: {
          ...pageQuery,
          properties: { ...pageQuery.properties, log: tenantParam },
        },
        response: pageResponse,
      },
      resource: () => auditLog(PLATFORM_REALM),
      handler: ({ principal, query }) => {
        if (principal.realm !== PLATFORM_REALM) throw problems.notFound()
        return page('all', query)
      },
    }),
    defineRoute<{ tenant: string }, FilterQuery & { format: 'ndjson' | 'csv' }>({
      method: 'GET',
      url: '/tenants/:tenant/audit/export',
      action: 'auditlog.export',
      summary: "Export the tenant's audit events as NDJSON or CSV",
      tags,
      schema: {
        params: tenantParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...filterProperties,
            format: { type: 'string', enum: ['ndjson', 'csv'], default: 'ndjson' },
          },
        },
      },
      resource: ({ tenant }) => auditLog(tenant),
      handler: async ({ tenant, query }) => {
        const rows = deps.query.all({ allowed: [tenant], log: tenant, ...filterOf(query) })
        const csv = query.format === 'csv'
        async function* body() {
          if (csv) yield csvHeader()
          for await (const e of rows) yield csv ? csvRow(e) : ndjsonRow(e)
        }
        return {
          body: Readable.from(body()),
          headers: {
            'content-type': csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson',
            'content-disposition': `attachment; filename="audit-${tenant}.${query.format}"`,
          },
          audit: { filter: filterOf(query), format: query.format },
        }
      },
    }),
    defineRoute<{ tenant: string }>({
      method: 'GET',
      url: '/tenants/:tenant/audit/keys',
      action: 'auditlog.read',
      summary: 'Checkpoint verifier keys (C2SP signed-note vkeys)',
      tags,
      schema: { params: tenantParams },
      resource: ({ tenant }) => auditLog(tenant),
      handler: async () => {
        await deps.keys.current()
        return { body: { keys: (await deps.keys.verifierKeys()).map((k) => k.vkey) } }
      },
    }),
    defineRoute<{ tenant: string }>({
      method: 'GET',
      url: '/tenants/:tenant/audit/checkpoint',
      action: 'auditlog.read',
      summary: 'Latest signed checkpoint (C2SP tlog-checkpoint as a signed note)',
      tags,
      schema: { params: tenantParams },
      resource: ({ tenant }) => auditLog(tenant),
      handler: async ({ tenant }) => ({
        body: (await deps.checkpoints.latest(tenant)) ?? (await deps.checkpoints.issue(tenant)),
      }),
    }),
    defineRoute<{ tenant: string }>({
      method: 'POST',
      url: '/tenants/:tenant/audit/checkpoint',
      action: 'auditlog.read',
      summary: 'Sign a checkpoint of the current log head now',
      tags,
      // The checkpoint commits in its own transaction; nothing else changes.
      write: false,
      schema: { params: tenantParams },
      resource: ({ tenant }) => auditLog(tenant),
      handler: async ({ tenant }) => ({ status: 201, body: await deps.checkpoints.issue(tenant) }),
    }),
    defineRoute<{ tenant: string; index: number }>({
      method: 'GET',
      url: '/tenants/:tenant/audit/events/:index',
      action: 'auditlog.read',
      summary: 'One event with the exact bytes hashed into its leaf',
      tags,
      schema: {
        params: {
          type: 'object',
          required: ['tenant', 'index'],
          properties: { tenant: tenantParam, index },
        },
      },
      resource: ({ tenant }) => auditLog(tenant),
      handler: async ({ tenant, params }) => {
        const e = await deps.query.event(tenant, params.index)
        if (!e) throw problems.notFound()
        return {
          body: {
            log: tenant,
            index: params.index,
            body: e.body,
            leafHash: e.leafHash.toString('base64'),
          },
        }
      },
    }),
    defineRoute<{ tenant: string }, { index: number; size: number }>({
      method: 'GET',
      url: '/tenants/:tenant/audit/proofs/inclusion',
      action: 'auditlog.read',
      summary: 'RFC 6962 inclusion proof of a leaf in a tree size',
      tags,
      schema: {
        params: tenantParams,
        querystring: {
          type: 'object',
          required: ['index', 'size'],
          additionalProperties: false,
          properties: { index, size: index },
        },
      },
      resource: ({ tenant }) => auditLog(tenant),
      handler: async ({ tenant, query }) => ({
        body: await deps.proofs.inclusion(tenant, query.index, query.size),
      }),
    }),
    defineRoute<{ tenant: string }, { first: number; second: number }>({
      method: 'GET',
      url: '/tenants/:tenant/audit/proofs/consistency',
      action: 'auditlog.read',
      summary: 'RFC 6962 consistency proof between two tree sizes',
      tags,
      schema: {
        params: tenantParams,
        querystring: {
          type: 'object',
          required: ['first', 'second'],
          additionalProperties: false,
          properties: { first: index, second: index },
        },
      },
      resource: ({ tenant }) => auditLog(tenant),
      handler: async ({ tenant, query }) => ({
        body: await deps.proofs.consistency(tenant, query.first, query.second),
      }),
    }),
  ]
}
