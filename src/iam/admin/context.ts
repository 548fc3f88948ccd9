import { randomBytes } from 'node:crypto'
import type { EntityUid, EntityWriter } from '../../authz/contract.ts'
import type { Db, Transaction } from '../../core/db/index.ts'
import { type FieldError, problems } from '../../core/errors.ts'
import type { Actor, EventSink } from '../../core/events.ts'
import type { Sealer } from '../kek.ts'

/** What every management function needs: storage, the event sink, the authz entity mirror. */
export interface AdminDeps {
  db: Db
  events: EventSink
  entities: EntityWriter
  sealer: Sealer
  /** Called after a change that affects a realm's OIDC provider (keys, settings, clients). */
  onRealmChanged?: (realm: string) => void
}

/** Who is acting, for the events; authorization happened before (gateway + PDP). */
export interface AdminActor {
  actor: Actor
  correlationId?: string
  sourceIp?: string
}

export const NAMESPACE = 'Dflare'

/** Cedar entity uids: tenant ids are global, everything else is qualified by its tenant. */
export const uid = {
  tenant: (realm: string): EntityUid => ({ type: `${NAMESPACE}::Tenant`, id: realm }),
  domain: (realm: string, id: string): EntityUid => ({
    type: `${NAMESPACE}::Domain`,
    id: `${realm}/${id}`,
  }),
  project: (realm: string, id: string): EntityUid => ({
    type: `${NAMESPACE}::Project`,
    id: `${realm}/${id}`,
  }),
  user: (realm: string, id: string): EntityUid => ({
    type: `${NAMESPACE}::User`,
    id: `${realm}/${id}`,
  }),
  group: (realm: string, id: string): EntityUid => ({
    type: `${NAMESPACE}::Group`,
    id: `${realm}/${id}`,
  }),
  serviceAccount: (realm: string, id: string): EntityUid => ({
    type: `${NAMESPACE}::ServiceAccount`,
    id: `${realm}/${id}`,
  }),
}

export const ref = (u: EntityUid) => ({ __entity: u })

export function newId(prefix: string) {
  return `${prefix}-${randomBytes(8).toString('hex')}`
}

/** Runs a change and its event in one transaction. */
export async function change<T>(
  deps: AdminDeps,
  who: AdminActor,
  tenant: string,
  event: { type: string; action: string; resource: { type: string; id: string } },
  fn: (tx: Transaction) => Promise<T>,
  details?: (result: T) => Record<string, unknown>,
): Promise<T> {
  return deps.db.transaction(async (tx) => {
    const result = await fn(tx)
    await deps.events.record(
      {
        type: event.type,
        tenant,
        actor: who.actor,
        action: event.action,
        resource: event.resource,
        outcome: 'success',
        correlationId: who.correlationId,
        sourceIp: who.sourceIp,
        details: details?.(result),
      },
      tx,
    )
    return result
  })
}

/** Validation helpers: collect field errors, throw one 400 problem. */
export class Check {
  readonly errors: FieldError[] = []
  optText(field: string, v: unknown, opts: { pattern?: RegExp; max?: number } = {}) {
    if (v === undefined || v === null) return undefined
    return this.text(field, v, opts)
  }
  text(field: string, v: unknown, opts: { pattern?: RegExp; max?: number } = {}): string {
    if (typeof v !== 'string' || v.length === 0) {
      this.errors.push({ field, message: 'is required' })
      return ''
    }
    if (v.length > (opts.max ?? 200)) this.errors.push({ field, message: 'is too long' })
    else if (opts.pattern && !opts.pattern.test(v))
      this.errors.push({ field, message: 'has the wrong form' })
    return v
  }
  bool(field: string, v: unknown, fallback: boolean) {
    if (v === undefined) return fallback
    if (typeof v !== 'boolean') this.errors.push({ field, message: 'must be a boolean' })
    return v === true
  }
  done() {
    if (this.errors.length) throw problems.badRequest('Invalid request', this.errors)
  }
}

export const SLUG = /^[a-z][a-z0-9-]{1,62}$/
export const ID = /^[a-z0-9][a-z0-9_-]{0,62}$/

export function isUniqueViolation(err: unknown) {
  return (err as { code?: string })?.code === '23505'
}

export function isForeignKeyViolation(err: unknown) {
  return (err as { code?: string })?.code === '23503'
}
