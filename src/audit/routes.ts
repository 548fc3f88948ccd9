import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { problems } from '../core/errors.ts'
import type { Actor } from '../core/events.ts'
import type { CheckpointService } from './checkpoints.ts'
import { LOG_NAME } from './event.ts'
import { csvHeader, csvRow, ndjsonRow } from './format.ts'
import type { KeyRing } from './keys.ts'
import type { ProofService } from './proofs.ts'
import type { EventFilter, QueryService } from './query.ts'
import type { AuditSink } from './sink.ts'

/**
 * What the gateway has already established about the caller: authenticated, authorized for the
 * audit API, and which logs it may read (a tenant's auditor: its own; the security officer: all).
 */
export interface AuditAccess {
  allowed: 'all' | readonly string[]
  actor: Actor
  /** The caller's tenant: reads of the audit log are recorded in this log. */
  tenant: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the gateway once the caller is authorized for the audit API. */
    auditAccess?: AuditAccess
  }
}

export interface AuditRouteDeps {
  sink: AuditSink
  query: QueryService
  proofs: ProofService
  checkpoints: CheckpointService
  keys: KeyRing
  /** Defaults to `request.auditAccess`. Undefined means no access (fail closed). */
  access?: (request: FastifyRequest) => AuditAccess | undefined
}

const CORRELATION = /^[A-Za-z0-9._:-]{1,128}$/
const logParam = {
  type: 'object',
  required: ['log'],
  properties: { log: { type: 'string', pattern: LOG_NAME.source } },
} as const
const index = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const

const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    log: { type: 'string', pattern: LOG_NAME.source },
    correlationId: { type: 'string', maxLength: 128 },
    actor: { type: 'string', maxLength: 256 },
    action: { type: 'string', maxLength: 256 },
    outcome: { type: 'string', enum: ['success', 'failure', 'denied', 'error'] },
    type: { type: 'string', maxLength: 128 },
    since: { type: 'string', format: 'date-time' },
    until: { type: 'string', format: 'date-time' },
    cursor: { type: 'string', maxLength: 512 },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    format: { type: 'string', enum: ['json', 'ndjson', 'csv'], default: 'json' },
  },
} as const

type EventsQuery = {
  log?: string
  correlationId?: string
  actor?: string
  action?: string
  outcome?: EventFilter['outcome']
  type?: string
  since?: string
  until?: string
  cursor?: string
  limit: number
  format: 'json' | 'ndjson' | 'csv'
}

/** The audit API under /api/v1/audit; every read is itself recorded in the caller's log. */
export async function auditRoutes(app: FastifyInstance, deps: AuditRouteDeps) {
  const accessOf = deps.access ?? ((r: FastifyRequest) => r.auditAccess)

  const authorize = (request: FastifyRequest, log?: string): AuditAccess => {
    const access = accessOf(request)
    if (!access) throw problems.forbidden()
    if (log && access.allowed !== 'all' && !access.allowed.includes(log))
      throw problems.forbidden('The audit log of another tenant is not readable')
    return access
  }

  /** Records the read before any data leaves (fail closed: no record, no response). */
  const recordRead = async (
    request: FastifyRequest,
    access: AuditAccess,
    action: string,
    resource: { type: string; id: string },
    details?: Record<string, unknown>,
  ) => {
    const header = request.headers['x-correlation-id']
    const correlationId =
      typeof header === 'string' && CORRELATION.test(header) ? header : String(request.id)
    await deps.sink.record({
      type: 'audit.read',
      tenant: access.tenant,
      actor: access.actor,
      action,
      resource,
      outcome: 'success',
      correlationId,
      sourceIp: request.ip,
      ...(typeof request.headers['user-agent'] === 'string'
        ? { userAgent: request.headers['user-agent'] }
        : {}),
      ...(details ? { details } : {}),
    })
  }

  app.get<{ Querystring: EventsQuery }>(
    '/api/v1/audit/events',
    { schema: { querystring: eventsQuery } },
    async (request, reply) => {
      const q = request.query
      const access = authorize(request, q.log)
      const filter: EventFilter = {
        allowed: access.allowed,
        ...(q.log ? { log: q.log } : {}),
        ...(q.correlationId ? { correlationId: q.correlationId } : {}),
        ...(q.actor ? { actor: q.actor } : {}),
        ...(q.action ? { action: q.action } : {}),
        ...(q.outcome ? { outcome: q.outcome } : {}),
        ...(q.type ? { type: q.type } : {}),
        ...(q.since ? { since: new Date(q.since) } : {}),
        ...(q.until ? { until: new Date(q.until) } : {}),
        ...(q.cursor ? { cursor: q.cursor } : {}),
        limit: q.limit,
      }
      const { cursor: _c, limit: _l, format: _f, ...shown } = q
      await recordRead(
        request,
        access,
        q.format === 'json' ? 'audit:QueryEvents' : 'audit:ExportEvents',
        { type: 'audit_log', id: q.log ?? (access.allowed === 'all' ? '*' : access.tenant) },
        { filter: shown, format: q.format },
      )
      if (q.format === 'json') return deps.query.events(filter)
      const { cursor: _, ...rest } = filter
      const rows = deps.query.all(rest)
      async function* body() {
        if (q.format === 'csv') yield csvHeader()
        for await (const e of rows) yield q.format === 'csv' ? csvRow(e) : ndjsonRow(e)
      }
      reply
        .type(q.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
        .header('content-disposition', `attachment; filename="audit.${q.format}"`)
      return reply.send(Readable.from(body()))
    },
  )

  app.get('/api/v1/audit/keys', async (request) => {
    authorize(request)
    await deps.keys.current() // publishes the first key if none exists yet
    return { keys: (await deps.keys.verifierKeys()).map((k) => k.vkey) }
  })

  app.get<{ Params: { log: string } }>(
    '/api/v1/audit/logs/:log/checkpoint',
    { schema: { params: logParam } },
    async (request) => {
      const access = authorize(request, request.params.log)
      await recordRead(request, access, 'audit:GetCheckpoint', {
        type: 'audit_log',
        id: request.params.log,
      })
      const cp =
        (await deps.checkpoints.latest(request.params.log)) ??
        (await deps.checkpoints.issue(request.params.log))
      return cp
    },
  )

  app.post<{ Params: { log: string } }>(
    '/api/v1/audit/logs/:log/checkpoint',
    { schema: { params: logParam } },
    async (request, reply) => {
      const access = authorize(request, request.params.log)
      await recordRead(request, access, 'audit:IssueCheckpoint', {
        type: 'audit_log',
        id: request.params.log,
      })
      reply.code(201)
      return deps.checkpoints.issue(request.params.log)
    },
  )

  app.get<{ Params: { log: string; index: number } }>(
    '/api/v1/audit/logs/:log/events/:index',
    {
      schema: {
        params: {
          type: 'object',
          required: ['log', 'index'],
          properties: { ...logParam.properties, index },
        },
      },
    },
    async (request) => {
      const { log, index: i } = request.params
      const access = authorize(request, log)
      await recordRead(request, access, 'audit:GetEvent', {
        type: 'audit_event',
        id: `${log}/${i}`,
      })
      const e = await deps.query.event(log, i)
      if (!e) throw problems.notFound()
      return { log, index: i, body: e.body, leafHash: e.leafHash.toString('base64') }
    },
  )

  app.get<{ Params: { log: string }; Querystring: { index: number; size: number } }>(
    '/api/v1/audit/logs/:log/proofs/inclusion',
    {
      schema: {
        params: logParam,
        querystring: {
          type: 'object',
          required: ['index', 'size'],
          additionalProperties: false,
          properties: { index, size: index },
        },
      },
    },
    async (request) => {
      const { log } = request.params
      const access = authorize(request, log)
      await recordRead(request, access, 'audit:GetInclusionProof', { type: 'audit_log', id: log })
      return deps.proofs.inclusion(log, request.query.index, request.query.size)
    },
  )

  app.get<{ Params: { log: string }; Querystring: { first: number; second: number } }>(
    '/api/v1/audit/logs/:log/proofs/consistency',
    {
      schema: {
        params: logParam,
        querystring: {
          type: 'object',
          required: ['first', 'second'],
          additionalProperties: false,
          properties: { first: index, second: index },
        },
      },
    },
    async (request) => {
      const { log } = request.params
      const access = authorize(request, log)
      await recordRead(request, access, 'audit:GetConsistencyProof', { type: 'audit_log', id: log })
      return deps.proofs.consistency(log, request.query.first, request.query.second)
    },
  )
}
