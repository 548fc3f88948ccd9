import type { FastifyInstance } from 'fastify'
import { problems } from '../core/errors.ts'
import type { SecurityEvent } from '../core/events.ts'
import type { InternalApi } from '../server/component.ts'
import { InvalidEventError } from './event.ts'
import type { AuditSink } from './sink.ts'

/**
 * The audit log for components in other processes (`dflare serve`), on the internal mutual-TLS
 * listener under /internal/v1/audit:
 *
 * - `POST /events` records an event outside any transaction (group commit); it answers only
 *   once the event is durable.
 * - `POST /prepare` validates and minimizes an event (pseudonyms are keyed with the audit
 *   host's key, which never leaves it) and returns the record; the caller queues it inside its
 *   own transaction, so a state change and its event still commit together (invariant 2).
 */
export const AUDIT_CALLERS = ['gateway', 'iam', 'isolation', 'pki'] as const

const str = (max: number) => ({ type: 'string', minLength: 1, maxLength: max }) as const

export const eventSchema = {
  type: 'object',
  required: ['type', 'tenant', 'actor', 'action', 'outcome'],
  additionalProperties: false,
  properties: {
    type: str(128),
    tenant: str(63),
    actor: {
      type: 'object',
      required: ['kind', 'id'],
      additionalProperties: false,
      properties: { kind: str(16), id: str(256), realm: str(63) },
    },
    action: str(256),
    resource: {
      type: 'object',
      required: ['type', 'id'],
      additionalProperties: false,
      properties: { type: str(128), id: str(512) },
    },
    outcome: { type: 'string', enum: ['success', 'failure', 'denied', 'error'] },
    reason: str(256),
    correlationId: str(128),
    sourceIp: str(64),
    userAgent: { type: 'string', maxLength: 8192 },
    details: { type: 'object' },
    time: { type: 'string', maxLength: 40 },
  },
} as const

const body = {
  type: 'object',
  required: ['event'],
  additionalProperties: false,
  properties: { event: eventSchema },
} as const

/** The event as sent over the wire: JSON, with `time` as an ISO 8601 string. */
export type WireEvent = Omit<SecurityEvent, 'time'> & { time?: string }

export function toWire(event: SecurityEvent): WireEvent {
  const { time, ...rest } = event
  return time ? { ...rest, time: time.toISOString() } : rest
}

function fromWire(wire: WireEvent): SecurityEvent {
  const { time, ...rest } = wire
  if (time === undefined) return rest
  const parsed = new Date(time)
  if (Number.isNaN(parsed.getTime())) throw problems.badRequest('event.time is not a date')
  return { ...rest, time: parsed }
}

export function auditInternalApi(sink: AuditSink): InternalApi {
  const invalid = (err: unknown) => {
    if (err instanceof InvalidEventError) throw problems.badRequest(err.message)
    throw err
  }
  return {
    component: 'audit',
    callers: AUDIT_CALLERS,
    routes(app: FastifyInstance) {
      app.post('/events', { schema: { body } }, async (request) => {
        const event = fromWire((request.body as { event: WireEvent }).event)
        await sink.record(event).catch(invalid)
        return { recorded: true }
      })
      app.post('/prepare', { schema: { body } }, async (request) => {
        const event = fromWire((request.body as { event: WireEvent }).event)
        try {
          const { log, body } = sink.prepare(event)
          return { log, body }
        } catch (err) {
          return invalid(err)
        }
      })
    },
  }
}
