import canonicalize from 'canonicalize'
import type { Actor, SecurityEvent } from '../core/events.ts'
import { leafHash } from './merkle.ts'
import type { Pseudonymizer } from './pseudonym.ts'

/**
 * The record stored as a Merkle leaf: the AU-3 fields of a SecurityEvent after minimization.
 * Its RFC 8785 (JCS) bytes are the leaf data; the index is implied by the position in the tree.
 */
export interface AuditRecord {
  v: 1
  /** UTC, ISO 8601 with milliseconds. */
  time: string
  type: string
  /** Also the log the record belongs to. */
  tenant: string
  actor: Actor
  action: string
  resource?: { type: string; id: string }
  outcome: SecurityEvent['outcome']
  reason?: string
  correlationId?: string
  sourceIp?: string
  userAgent?: string
  details?: Record<string, unknown>
}

export const LOG_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
const TYPE = /^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*$/
const OUTCOMES = new Set(['success', 'failure', 'denied', 'error'])
const ACTOR_KINDS = new Set(['user', 'service', 'system', 'anonymous'])
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
const JWT = /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/
/** Detail keys whose values are credentials: never stored, not even hashed. */
const SECRET_KEY =
  /pass(word|phrase)?|secret|private|credential|otp|recovery|^code$|authorization|cookie|assertion|^(access|refresh|id)?_?token$/i
/** Detail keys whose values identify a token or session: stored as keyed pseudonyms. */
const TOKEN_ID_KEY = /^(jti|token_?id|session_?id|sid|grant_?id)$/i
const MAX_DETAILS_BYTES = 8192

export class InvalidEventError extends Error {
  override name = 'InvalidEventError'
}

function text(name: string, value: unknown, max: number, optional = false): string | undefined {
  if (value === undefined && optional) return undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > max)
    throw new InvalidEventError(`event field ${name} must be a string of 1..${max} characters`)
  return value
}

/** Validates an event and applies minimization; the result is what the log stores. */
export function toRecord(event: SecurityEvent, p: Pseudonymizer, now: Date): AuditRecord {
  const tenant = text('tenant', event.tenant, 63)!
  if (!LOG_NAME.test(tenant)) throw new InvalidEventError('event field tenant is malformed')
  const type = text('type', event.type, 128)!
  if (!TYPE.test(type)) throw new InvalidEventError('event field type is malformed')
  if (!OUTCOMES.has(event.outcome)) throw new InvalidEventError('event field outcome is invalid')
  const actor = event.actor
  if (!actor || !ACTOR_KINDS.has(actor.kind))
    throw new InvalidEventError('event field actor.kind is invalid')
  const time = event.time ?? now
  if (!(time instanceof Date) || Number.isNaN(time.getTime()))
    throw new InvalidEventError('event field time is invalid')

  const actorRealm = actor.realm ? text('actor.realm', actor.realm, 63)! : undefined
  const actorId = p.maybeEmail(text('actor.id', actor.id, 256)!)
  const action = text('action', event.action, 256)!
  const resource = event.resource && {
    id: p.maybeEmail(text('resource.id', event.resource.id, 512)!),
    type: text('resource.type', event.resource.type, 128)!,
  }
  const reason = text('reason', event.reason, 256, true)
  const correlationId = text('correlationId', event.correlationId, 128, true)
  const ip = text('sourceIp', event.sourceIp, 64, true)
  const userAgent = typeof event.userAgent === 'string' ? event.userAgent.slice(0, 512) : undefined
  let details: Record<string, unknown> | undefined
  if (event.details && Object.keys(event.details).length > 0) {
    details = minimize(event.details, p, 0) as Record<string, unknown>
    // The same length as its RFC 8785 form (which only reorders keys).
    if (Buffer.byteLength(JSON.stringify(details)) > MAX_DETAILS_BYTES)
      throw new InvalidEventError(`event details exceed ${MAX_DETAILS_BYTES} bytes`)
  }
  // Keys in RFC 8785 order (sorted by UTF-16 code units), here and in minimize: JSON.stringify
  // then writes the canonical form as it is (canonicalText). Optional fields are assigned in that
  // order too, only when present (no spread of a temporary object per field: this runs for every
  // request).
  const record = { action } as AuditRecord
  record.actor = { id: actorId, kind: actor.kind }
  if (actorRealm) record.actor.realm = actorRealm
  if (correlationId) record.correlationId = correlationId
  if (details) record.details = details
  record.outcome = event.outcome
  if (reason) record.reason = p.maybeEmail(reason)
  if (resource) record.resource = resource
  if (ip) record.sourceIp = p.ip(ip)
  record.tenant = tenant
  record.time = time.toISOString()
  record.type = type
  if (userAgent) record.userAgent = userAgent
  record.v = 1
  return record
}

/** Sorts keys by UTF-16 code units, as RFC 8785 does. */
const byCodeUnits = ([a]: [string, unknown], [b]: [string, unknown]) => (a < b ? -1 : a > b ? 1 : 0)

function minimize(value: unknown, p: Pseudonymizer, depth: number, key = ''): unknown {
  if (depth > 6) throw new InvalidEventError('event details are nested too deeply')
  if (key && SECRET_KEY.test(key)) return '[redacted]'
  if (typeof value === 'string') {
    if (key && TOKEN_ID_KEY.test(key)) return p.token(value)
    if (JWT.test(value)) return '[redacted]'
    return p.maybeEmail(value)
  }
  if (Array.isArray(value)) return value.map((v) => minimize(v, p, depth + 1))
  if (value && typeof value === 'object') {
    // In RFC 8785 order (see toRecord).
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value).sort(byCodeUnits)) {
      if (v !== undefined) out[k] = minimize(v, p, depth + 1, k)
    }
    return out
  }
  if (typeof value === 'number' && !Number.isFinite(value))
    throw new InvalidEventError('event details hold a non-finite number')
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol')
    throw new InvalidEventError('event details hold a non-JSON value')
  return value
}

export function isEmail(s: string): boolean {
  return EMAIL.test(s)
}

/** RFC 8785 canonical JSON of a record: its UTF-8 bytes are the leaf data. */
export function canonicalJson(record: AuditRecord): string {
  return canonicalText(record)
}

/**
 * RFC 8785 canonical JSON of a JSON value. JSON.stringify writes strings and numbers as RFC 8785
 * does (ECMAScript's number formatting and string escaping) but keeps each object's key order:
 * when every key order already is the sorted one (records are built so, see toRecord), its output
 * is the canonical form, without sorting or concatenating anything here. Otherwise, and for
 * anything RFC 8785 refuses (lone surrogates, non-finite numbers) or JSON.stringify would write
 * otherwise (toJSON, undefined, integer-like keys that JavaScript enumerates first), canonicalize
 * decides.
 */
export function canonicalText(value: unknown): string {
  let json: string | undefined
  try {
    json = stringifiesCanonically(value, 0) ? JSON.stringify(value) : canonicalize(value)
  } catch (err) {
    throw new InvalidEventError(`event is not serializable: ${(err as Error).message}`)
  }
  if (json === undefined) throw new InvalidEventError('event is not serializable')
  return json
}

function stringifiesCanonically(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
      return value.isWellFormed()
    case 'number':
      return Number.isFinite(value)
    case 'boolean':
      return true
    case 'object': {
      if (value === null) return true
      if (depth > 32) return false
      if (Array.isArray(value)) return value.every((v) => stringifiesCanonically(v, depth + 1))
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return false
      let previous: string | undefined
      for (const [key, v] of Object.entries(value)) {
        if (previous !== undefined && !(previous < key)) return false
        if (!key.isWellFormed() || !stringifiesCanonically(v, depth + 1)) return false
        previous = key
      }
      return true
    }
    default:
      return false
  }
}

/** The exact leaf bytes of a record. */
export function canonicalBytes(record: AuditRecord): Buffer {
  return Buffer.from(canonicalJson(record), 'utf8')
}

export function recordLeafHash(record: AuditRecord): Buffer {
  return leafHash(canonicalBytes(record))
}
