import type { Db, Transaction } from '../core/db/index.ts'
import type { EventSink, SecurityEvent } from '../core/events.ts'
import type { AdminDeps } from '../iam/admin/context.ts'

/** A domain event captured by `txAdminDeps`, as carried in the gateway's `api.request` event. */
export interface CapturedEvent {
  type: string
  action: string
  resource?: { type: string; id: string }
  tenant: string
  details?: Record<string, unknown>
}

function unavailable(what: string): never {
  throw new Error(`${what} is not available inside a gateway write transaction`)
}

/**
 * AdminDeps bound to the gateway's write transaction. The IAM management functions run their
 * change in `db.transaction` and record a domain event; here the "transaction" is the gateway's
 * own (no nested transaction, which would deadlock on PGlite) and the event is captured rather
 * than written, so the gateway records exactly one audit event, in the same transaction, carrying
 * the domain events' details.
 */
export function txAdminDeps(
  deps: AdminDeps,
  tx: Transaction,
): { deps: AdminDeps; events: CapturedEvent[] } {
  const events: CapturedEvent[] = []
  const db: Db = {
    engine: deps.db.engine,
    // It cannot listen: nothing may count on hearing its notifications.
    soleWriter: false,
    // Already inside the gateway's transaction: nothing to hold.
    holdsReads: false,
    query: (sql, params) => tx.query(sql, params),
    // The caller's transaction options (role, settings) are not needed by the IAM admin functions.
    transaction: (fn) => fn(tx),
    listen: () => unavailable('listen'),
    notify: () => unavailable('notify'),
    close: () => unavailable('close'),
  }
  const sink: EventSink = {
    async record(event: SecurityEvent) {
      events.push({
        type: event.type,
        action: event.action,
        tenant: event.tenant,
        ...(event.resource ? { resource: event.resource } : {}),
        ...(event.details ? { details: event.details } : {}),
      })
    },
  }
  return { deps: { ...deps, db, events: sink }, events }
}
