import { AsyncLocalStorage } from 'node:async_hooks'
import { randomBytes, randomUUID } from 'node:crypto'

/** Accepted inbound correlation ids: 8–128 characters of a conservative, log-safe alphabet. */
const CORRELATION_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/
/** W3C Trace Context `traceparent`, version 00 (future versions parse the same prefix). */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/

export interface TraceContext {
  traceId: string
  /** The caller's span id. */
  parentId: string
  flags: string
}

export function isCorrelationId(value: unknown): value is string {
  return typeof value === 'string' && CORRELATION_ID.test(value)
}

export function parseTraceparent(value: unknown): TraceContext | undefined {
  if (typeof value !== 'string') return undefined
  const m = TRACEPARENT.exec(value.trim())
  if (!m) return undefined
  const [, version, traceId, parentId, flags, rest] = m
  if (version === 'ff' || (version === '00' && rest)) return undefined
  if (/^0+$/.test(traceId!) || /^0+$/.test(parentId!)) return undefined
  return { traceId: traceId!, parentId: parentId!, flags: flags! }
}

export function newCorrelationId(): string {
  return randomUUID()
}

export function newSpanId(): string {
  return randomBytes(8).toString('hex')
}

export function newTraceId(): string {
  return randomBytes(16).toString('hex')
}

/** What calls made while serving a request carry to other components (the request's ids). */
export interface OutboundContext {
  correlationId: string
  /** A `traceparent` naming a new span of the request's trace. */
  traceparent: () => string
}

const outbound = new AsyncLocalStorage<OutboundContext>()

/**
 * Marks the rest of the current asynchronous context as serving a request with these ids, so
 * calls to other components (PDP, identity, audit over mTLS) carry them and every process's log
 * lines of that request share one correlation id.
 */
export function enterOutboundContext(context: OutboundContext) {
  outbound.enterWith(context)
}

/** Headers for a call to another component: the current request's ids, when there is one. */
export function outboundHeaders(): Record<string, string> {
  const c = outbound.getStore()
  return c ? { 'x-correlation-id': c.correlationId, traceparent: c.traceparent() } : {}
}
