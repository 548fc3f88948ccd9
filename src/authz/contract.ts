import type { Transaction } from '../core/db/index.ts'

/**
 * The authorization module's interface to the rest of the system. Other modules never read
 * authz tables: they describe their entities through EntityWriter (inside their own transaction,
 * so the entity store changes with the data it mirrors) and ask the PDP for decisions.
 *
 * Entity types live in the Cedar namespace `Dflare` (`Dflare::User`, `Dflare::Project`, …).
 * Attribute values use Cedar's JSON entity format: entity references as
 * `{ "__entity": { "type", "id" } }`, extension values as `{ "__extn": { "fn", "arg" } }`.
 */
export interface EntityUid {
  type: string
  id: string
}

export interface EntityRecord {
  uid: EntityUid
  /** Tenant that owns the entity (`platform` for operator-owned ones). */
  tenant: string
  attrs: Record<string, unknown>
  /** Direct parents in the hierarchy (groups of a user, domain of a project, …). */
  parents: EntityUid[]
  /** Cedar entity tags: resource labels (`resource.getTag("team")`). String values. */
  tags?: Record<string, string>
}

export interface EntityWriter {
  upsert(tx: Transaction, entities: readonly EntityRecord[]): Promise<void>
  remove(tx: Transaction, uids: readonly EntityUid[]): Promise<void>
}

export interface AuthorizationRequest {
  principal: EntityUid
  action: EntityUid
  resource: EntityUid
  context: Record<string, unknown>
  /** Request-scoped entities (e.g. the resource being created) added to the stored ones. */
  entities?: readonly EntityRecord[]
}

export interface Decision {
  decision: 'allow' | 'deny'
  /** Ids of the policies that determined the decision (permits for allow, forbids for deny). */
  determining: string[]
  /** Policies skipped because their condition raised an error. */
  errors: { policy: string; message: string }[]
  /** Human-readable reason, safe to show the caller. */
  reason: string
}

/** The policy decision point. Any internal failure yields a deny with a reason (fail closed). */
export interface Pdp {
  decide(request: AuthorizationRequest): Promise<Decision>
}
