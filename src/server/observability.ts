import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from 'fastify'
import type { Registry } from 'prom-client'
import {
  isCorrelationId,
  newCorrelationId,
  newSpanId,
  newTraceId,
  parseTraceparent,
} from '../core/correlation.ts'
import { httpMetrics } from '../core/metrics.ts'

export interface RequestTrace {
  traceId: string
  /** This server's span for the request. */
  spanId: string
  /** The caller's span, when a valid traceparent came in. */
  parentId?: string
  flags: string
}

declare module 'fastify' {
  interface FastifyRequest {
    trace: RequestTrace
  }
}

/** Fastify `genReqId`: the request id *is* the correlation id (inbound when well-formed). */
export function correlationIdOf(req: { headers: Record<string, unknown> }): string {
  const inbound = req.headers['x-correlation-id']
  return isCorrelationId(inbound) ? inbound : newCorrelationId()
}

/** `traceparent` for calls this request makes to other services. */
export function outboundTraceparent(request: FastifyRequest): string {
  const t = request.trace as RequestTrace | null
  // A server built without observability (some tests) has no trace: start one.
  if (!t) return `00-${newTraceId()}-${newSpanId()}-01`
  return `00-${t.traceId}-${newSpanId()}-${t.flags}`
}

/** A request's trace: the caller's (a valid `traceparent`) continued, else a new one. */
function traceOf(traceparent: unknown): RequestTrace {
  const parent = parseTraceparent(traceparent)
  return {
    traceId: parent?.traceId ?? newTraceId(),
    spanId: newSpanId(),
    parentId: parent?.parentId,
    flags: parent?.flags ?? '00',
  }
}

/** Each request's trace, made with its logger (Fastify builds the logger before the request). */
const traces = new WeakMap<object, RequestTrace>()

/**
 * Fastify `childLoggerFactory`: one child logger per request, bound to its correlation id and
 * trace. (A child of that child would cost pino a second copy of its formatters per request.)
 */
export const requestLogger: NonNullable<FastifyServerOptions['childLoggerFactory']> = (
  logger,
  bindings,
  options,
  raw,
) => {
  const trace = traceOf(raw.headers.traceparent)
  traces.set(raw, trace)
  const bound = { ...bindings, traceId: trace.traceId, spanId: trace.spanId }
  // pino takes a shorter path for a child without options.
  return Object.keys(options).length === 0 ? logger.child(bound) : logger.child(bound, options)
}

/** Correlation id echo, trace context on every log line, request metrics and a completion log. */
export function installObservability(app: FastifyInstance, registry: Registry) {
  const metrics = httpMetrics(registry)
  app.decorateRequest('trace', null as unknown as RequestTrace)

  app.addHook('onRequest', (request, reply, done) => {
    const trace = traces.get(request.raw)
    // buildApp gives Fastify requestLogger, which made the trace with the request's logger.
    if (!trace) return done(new Error('the request logger was not made by requestLogger'))
    request.trace = trace
    reply.header('x-correlation-id', request.id)
    done()
  })

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    const labels = { method: request.method, route, status: String(reply.statusCode) }
    const seconds = reply.elapsedTime / 1000
    metrics.requests.inc(labels)
    metrics.duration.observe(labels, seconds)
    // The path only: query strings can carry codes and tokens.
    request.log.info(
      {
        method: request.method,
        route,
        path: request.url.split('?')[0],
        status: reply.statusCode,
        ms: reply.elapsedTime,
      },
      'request completed',
    )
  })
}
