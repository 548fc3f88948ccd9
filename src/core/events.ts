import type { Transaction } from './db/index.ts'

/**
 * A security-relevant event (NIST AU-3 content). Every module reports through an EventSink;
 * the audit module persists them in its tamper-evident log. Never put secrets in any field:
 * passwords, tokens, keys and codes must not appear, and personal data (emails, IPs where
 * configured) is pseudonymised by the sink.
 */
export interface SecurityEvent {
  /** Dotted type, e.g. `auth.login`, `auth.mfa`, `token.issued`, `api.request`, `policy.changed`. */
  type: string
  /** Tenant (realm) whose log receives the event; `platform` for operator actions. */
  tenant: string
  actor: Actor
  /** What was attempted, e.g. the Cedar action id `api:CreateProject` or `login`. */
  action: string
  resource?: { type: string; id: string }
  outcome: 'success' | 'failure' | 'denied' | 'error'
  /** Short machine-readable reason, e.g. `invalid_password`, `policy_denied`. */
  reason?: string
  correlationId?: string
  sourceIp?: string
  userAgent?: string
  /** Extra structured detail; values must be free of secrets. */
  details?: Record<string, unknown>
  /** Defaults to the sink's clock. */
  time?: Date
}

export interface Actor {
  kind: 'user' | 'service' | 'system' | 'anonymous'
  /** Stable pseudonymous identifier (subject id, client id); never an email or a secret. */
  id: string
  /** Realm that authenticated the actor, when different from the event's tenant. */
  realm?: string
}

export interface EventSink {
  /**
   * Records an event. Throws when it cannot record: callers must then fail the action (fail
   * closed). With `tx` the event is queued inside the caller's transaction, so the state change
   * and its event commit together or not at all: the promise resolves once the statement is
   * issued (COMMIT can go out right behind it), and if the statement fails the transaction's
   * commit fails with an error `isAuditFailure` recognises.
   */
  record(event: SecurityEvent, tx?: Transaction): Promise<void>
}

const auditFailures = new WeakSet<object>()

/** For sinks: marks the failure, if any, of an audit statement issued in a caller's transaction. */
export function markAuditFailure(statement: Promise<unknown>): void {
  statement.catch((err: unknown) => {
    if (typeof err === 'object' && err !== null) auditFailures.add(err)
  })
}

/** True when a transaction failed because its audit event could not be queued (a 503, not a 500). */
export function isAuditFailure(err: unknown): boolean {
  return typeof err === 'object' && err !== null && auditFailures.has(err)
}

/** Collects events in memory; for tests and for components run without an audit log. */
export class MemoryEventSink implements EventSink {
  readonly events: SecurityEvent[] = []
  async record(event: SecurityEvent) {
    this.events.push(event)
  }
}
