/**
 * The read side of the entity store: an in-memory cache of entities and role bindings shared by
 * every decision in this process, kept consistent with the database across processes:
 * - writers bump `authz.state.revision` and NOTIFY in the same transaction (writer.ts);
 * - this cache applies notifications as they arrive (dropping changed entries);
 * - in `strong` mode each decision first reads the current revision (one single-row query, shared
 *   with concurrent decisions and other modules' checks, but always one that started after the
 *   decision did or its request arrived: core/revisions.ts, core/fresh-read.ts)
 *   and, if a notification has not arrived yet, waits briefly for it, else drops the whole cache.
 *   So a decision that starts after a binding removal committed never sees the removed binding;
 * - when the listener connection is lost (LISTENER_LOST) the cache is dropped and decisions read
 *   straight from the database until listening again (fail closed, never stale).
 */
import { type Db, LISTENER_LOST } from '../core/db/index.ts'
import { AppliedRevision, revisionsOf } from '../core/revisions.ts'
import type { BindingGroup } from './catalog.ts'
import type { EntityData, EntityLookup } from './cedar/compile.ts'
import { CedarError } from './cedar/errors.ts'
import { EntityValue, entityFromJson, type Value, valueFromJson } from './cedar/values.ts'
import type { EntityRecord } from './contract.ts'
import { Hierarchy, type StoredEntity } from './hierarchy.ts'
import { NAMESPACE, type Role, type ScopeType } from './schema.ts'
import { CHANGES_CHANNEL, type ChangeNotice } from './writer.ts'

export type Consistency = 'strong' | 'notify'

export type { StoredEntity }

const ROLE_BINDING = `${NAMESPACE}::RoleBinding`
const PRINCIPAL_TYPES = new Set(
  ['User', 'Group', 'ServiceAccount'].map((t) => `${NAMESPACE}::${t}`),
)
/** Bounds on the slice of the hierarchy one decision may load (a runaway graph is denied). */
const MAX_SLICE = 2048
const NOTIFY_WAIT_MS = 200
const REVISION_SQL = 'SELECT revision FROM authz.state WHERE singleton'
/** Where every change of that revision is announced (migration 0002). */
const REVISION_CHANNEL = 'authz_revision'

export class SliceTooLargeError extends Error {
  override name = 'SliceTooLargeError'
}

function toMap(obj: Record<string, unknown> | null | undefined): Map<string, Value> {
  const m = new Map<string, Value>()
  for (const [k, v] of Object.entries(obj ?? {})) m.set(k, valueFromJson(v))
  return m
}

/** Entity record (contract form) to the stored form; `tenant` is always an attribute too. */
export function storedFromRecord(
  r: EntityRecord,
  extraParents: EntityValue[] = [],
  tags?: Record<string, unknown>,
): StoredEntity {
  const attrs = toMap(r.attrs)
  attrs.set('tenant', r.tenant)
  return {
    uid: new EntityValue(r.uid.type, r.uid.id),
    tenant: r.tenant,
    attrs,
    parents: [...(r.parents ?? []).map(entityFromJson), ...extraParents],
    tags: toMap(tags ?? r.tags),
  }
}

/** RoleBinding group entities are derived from their id `tenant/ScopeType/scopeId/role`. */
function bindingGroupEntity(uid: EntityValue): StoredEntity | undefined {
  const parts = uid.id.split('/')
  if (parts.length < 4) return undefined
  const tenant = parts[0]!
  const role = parts[parts.length - 1]!
  const scope = `${parts[1]}/${parts.slice(2, -1).join('/')}`
  return {
    uid,
    tenant,
    attrs: new Map<string, Value>([
      ['tenant', tenant],
      ['role', role],
      ['scope', scope],
    ]),
    parents: [],
    tags: new Map(),
  }
}

/** RoleBinding group entities are not stored: they are derived from their key. */
export function deriveBindingGroup(key: string): StoredEntity | undefined {
  if (!key.startsWith(`${ROLE_BINDING}\u0000`)) return undefined
  return bindingGroupEntity(new EntityValue(ROLE_BINDING, key.slice(ROLE_BINDING.length + 1)))
}

export function bindingGroupUidOf(
  tenant: string,
  role: string,
  scopeType: string,
  scopeId: string,
) {
  return new EntityValue(ROLE_BINDING, `${tenant}/${scopeType}/${scopeId}/${role}`)
}

type Listener = (notice: ChangeNotice | 'all') => void

export class EntityCache {
  readonly #db: Db
  readonly consistency: Consistency
  readonly #entities = new Hierarchy(deriveBindingGroup)
  readonly #bindingGroups = new Map<string, BindingGroup[]>()
  readonly #listeners = new Set<Listener>()
  readonly #applied = new AppliedRevision()
  /** Bumped on every invalidation: results fetched across a bump are used but not cached. */
  #epoch = 0
  #listening = false
  #unlisten: (() => Promise<void>) | undefined
  #stopped = false
  constructor(db: Db, consistency: Consistency = 'strong') {
    this.#db = db
    this.consistency = consistency
    revisionsOf(db).register('authz', REVISION_SQL, REVISION_CHANNEL)
  }

  get listening() {
    return this.#listening
  }

  get size() {
    return this.#entities.size
  }

  onChange(listener: Listener): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  async start(): Promise<void> {
    this.#stopped = false
    this.#unlisten = await this.#db.listen(CHANGES_CHANNEL, (p) => this.#handle(p))
    // Read the revision after LISTEN: every later change is then seen as a notification.
    const revision = await this.#readRevision()
    this.#dropAll()
    this.#applied.advance(revision)
    this.#listening = true
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#listening = false
    const un = this.#unlisten
    this.#unlisten = undefined
    await un?.()
    this.#dropAll()
  }

  async #readRevision(): Promise<number> {
    const { rows } = await this.#db.query<{ revision: number }>(REVISION_SQL)
    return rows[0]?.revision ?? 0
  }

  #dropAll() {
    this.#epoch++
    this.#entities.clear()
    this.#bindingGroups.clear()
    for (const l of this.#listeners) l('all')
  }

  #handle(payload: string) {
    if (payload === LISTENER_LOST) {
      this.#listening = false
      this.#unlisten = undefined
      this.#dropAll()
      if (!this.#stopped) setTimeout(() => this.#relisten(), 100).unref()
      return
    }
    let notice: ChangeNotice
    try {
      notice = JSON.parse(payload) as ChangeNotice
    } catch {
      this.#dropAll()
      return
    }
    this.#epoch++
    if (notice.all) this.#dropAll()
    else {
      for (const [type, id] of notice.entities ?? []) this.#entities.delete(`${type}\u0000${id}`)
      for (const t of notice.bindingTenants ?? []) this.#bindingGroups.delete(t)
      for (const l of this.#listeners) l(notice)
    }
    this.#applied.advance(notice.revision)
  }

  async #relisten() {
    if (this.#stopped || this.#listening) return
    try {
      await this.start()
    } catch {
      if (!this.#stopped) setTimeout(() => this.#relisten(), 1000).unref()
    }
  }

  /**
   * Makes the cache at least as new as the database (strong mode). Returns whether the cache may
   * be used; when it returns false the caller must read from the database without caching.
   */
  async sync(): Promise<boolean> {
    if (!this.#listening) return false
    if (this.consistency === 'notify') return true
    const current = await revisionsOf(this.#db).current('authz', this.#applied)
    if (!(await this.#applied.reached(current, NOTIFY_WAIT_MS))) {
      // The notifications did not arrive in time: an empty cache is as new as `current`.
      this.#dropAll()
      this.#applied.advance(current)
    }
    return this.#listening
  }

  /**
   * The cache itself as the evaluator's lookup, when the roots and all their ancestors are
   * loaded (closures exact); undefined when something must be fetched first.
   */
  lookup(roots: readonly EntityValue[]): EntityLookup | undefined {
    if (!this.#listening) return undefined
    for (const r of roots) {
      const entry = this.#entities.get(r.key)
      if (entry ? !entry.complete : !this.#entities.has(r.key)) return undefined
    }
    return this.#entities
  }

  /** Loads the roots and their ancestors into the cache; false if a concurrent change raced. */
  async load(roots: readonly EntityValue[]): Promise<boolean> {
    for (let round = 0; round < 64; round++) {
      const missing = this.#entities.missing(roots)
      if (missing.length === 0) return true
      const epoch = this.#epoch
      await this.#fetch(missing, true)
      if (epoch !== this.#epoch || !this.#listening) return false
      if (this.#entities.size > 1_000_000) this.#dropAll() // hard memory bound
    }
    throw new SliceTooLargeError('entity hierarchy too deep')
  }

  /**
   * The entities a decision needs: the roots (principal, resource, entities named in the
   * context), every ancestor, and the request-scoped entities (which win over stored ones).
   */
  async slice(
    roots: readonly EntityValue[],
    requestEntities: readonly StoredEntity[] = [],
    useCache = true,
  ): Promise<Map<string, EntityData>> {
    const found = new Map<string, StoredEntity | null>()
    for (const r of requestEntities) found.set(r.uid.key, r)
    let frontier = [...roots, ...requestEntities.flatMap((r) => r.parents)]
    while (frontier.length > 0) {
      const missing: EntityValue[] = []
      for (const e of frontier) {
        if (found.has(e.key)) continue
        const cached = useCache ? this.#entities.stored(e.key) : undefined
        if (cached !== undefined) found.set(e.key, cached)
        else if (e.type === ROLE_BINDING) found.set(e.key, bindingGroupEntity(e) ?? null)
        else missing.push(e)
      }
      if (missing.length > 0) {
        const fetched = await this.#fetch(missing, useCache)
        for (const e of missing) found.set(e.key, fetched.get(e.key) ?? null)
      }
      const next: EntityValue[] = []
      for (const e of frontier) for (const p of found.get(e.key)?.parents ?? []) next.push(p)
      frontier = next.filter((p) => !found.has(p.key))
      if (found.size > MAX_SLICE) throw new SliceTooLargeError('entity hierarchy too large')
    }
    return close(found)
  }

  async #fetch(uids: EntityValue[], useCache: boolean): Promise<Map<string, StoredEntity>> {
    const epoch = this.#epoch
    const types = uids.map((u) => u.type)
    const ids = uids.map((u) => u.id)
    const { rows } = await this.#db.query<{
      type: string
      id: string
      tenant: string
      attrs: Record<string, unknown>
      parents: unknown[]
      tags: Record<string, unknown>
    }>(
      `SELECT e.type, e.id, e.tenant, e.attrs, e.parents, e.tags
         FROM authz.entities e
         JOIN unnest($1::text[], $2::text[]) AS k(type, id) ON e.type = k.type AND e.id = k.id`,
      [types, ids],
    )
    const principals = uids.filter((u) => PRINCIPAL_TYPES.has(u.type))
    const bindings = new Map<string, EntityValue[]>()
    if (principals.length > 0) {
      const short = principals.map((u) => u.type.slice(NAMESPACE.length + 2))
      const res = await this.#db.query<{
        tenant: string
        principal_type: string
        principal_id: string
        role: string
        scope_type: string
        scope_id: string
      }>(
        `SELECT b.tenant, b.principal_type, b.principal_id, b.role, b.scope_type, b.scope_id
           FROM authz.role_bindings b
           JOIN unnest($1::text[], $2::text[]) AS k(type, id)
             ON b.principal_type = k.type AND b.principal_id = k.id`,
        [short, principals.map((u) => u.id)],
      )
      for (const b of res.rows) {
        const key = `${NAMESPACE}::${b.principal_type}\u0000${b.principal_id}`
        const list = bindings.get(key) ?? []
        list.push(bindingGroupUidOf(b.tenant, b.role, b.scope_type, b.scope_id))
        bindings.set(key, list)
      }
    }
    const out = new Map<string, StoredEntity>()
    for (const r of rows) {
      const key = `${r.type}\u0000${r.id}`
      const record = { uid: { type: r.type, id: r.id }, tenant: r.tenant, attrs: r.attrs }
      out.set(
        key,
        storedFromRecord(
          { ...record, parents: r.parents as EntityRecord['parents'] },
          bindings.get(key),
          r.tags,
        ),
      )
    }
    // Cache only what no invalidation raced with; absent entities are cached as absent too.
    if (useCache && epoch === this.#epoch && this.#listening) {
      for (const u of uids) this.#entities.set(u.key, out.get(u.key) ?? null)
    }
    return out
  }

  /** Whether any of the entities exists in the store (always read from the database). */
  async anyStored(uids: readonly EntityValue[]): Promise<boolean> {
    const { rows } = await this.#db.query(
      `SELECT 1 FROM authz.entities e
         JOIN unnest($1::text[], $2::text[]) AS k(type, id) ON e.type = k.type AND e.id = k.id
        LIMIT 1`,
      [uids.map((u) => u.type), uids.map((u) => u.id)],
    )
    return rows.length > 0
  }

  /** Distinct (role, scope) binding groups of a tenant: each one is a linked role policy. */
  async bindingGroups(tenant: string, useCache = true): Promise<BindingGroup[]> {
    const cached = useCache ? this.#bindingGroups.get(tenant) : undefined
    if (cached) return cached
    const epoch = this.#epoch
    const { rows } = await this.#db.query<{ role: Role; scope_type: ScopeType; scope_id: string }>(
      `SELECT DISTINCT role, scope_type, scope_id FROM authz.role_bindings WHERE tenant = $1
        ORDER BY role, scope_type, scope_id`,
      [tenant],
    )
    const groups = rows.map((r) => ({
      tenant,
      role: r.role,
      scope: { type: r.scope_type, id: r.scope_id },
    }))
    if (useCache && epoch === this.#epoch && this.#listening)
      this.#bindingGroups.set(tenant, groups)
    return groups
  }
}

/**
 * The slice of `roots` and their ancestors from an in-memory source (`undefined` = not loaded,
 * `null` = known absent); undefined when something is not loaded.
 */
export function sliceFrom(
  get: (key: string) => StoredEntity | null | undefined,
  roots: readonly EntityValue[],
): Map<string, EntityData> | undefined {
  const found = new Map<string, StoredEntity | null>()
  const stack = [...roots]
  while (stack.length > 0) {
    const e = stack.pop()!
    if (found.has(e.key)) continue
    let s = get(e.key)
    if (s === undefined) {
      if (e.type !== ROLE_BINDING) return undefined
      s = bindingGroupEntity(e) ?? null
    }
    found.set(e.key, s)
    if (s) for (const p of s.parents) stack.push(p)
    if (found.size > MAX_SLICE) throw new SliceTooLargeError('entity hierarchy too large')
  }
  return close(found)
}

/** Transitive ancestors inside a slice (parents outside the slice still count, as in Cedar). */
function close(found: Map<string, StoredEntity | null>): Map<string, EntityData> {
  const closures = new Map<string, Set<string>>()
  const ancestors = (key: string, depth: number): Set<string> => {
    const done = closures.get(key)
    if (done) return done
    if (depth > 64) throw new CedarError('entity hierarchy too deep')
    const out = new Set<string>()
    closures.set(key, out) // guards against cycles
    for (const p of found.get(key)?.parents ?? []) {
      out.add(p.key)
      for (const a of ancestors(p.key, depth + 1)) out.add(a)
    }
    return out
  }
  const result = new Map<string, EntityData>()
  for (const [key, s] of found) {
    if (!s) continue
    result.set(key, {
      uid: s.uid,
      attrs: s.attrs,
      ancestors: ancestors(key, 0),
      tags: s.tags,
      memo0: undefined,
      list0: undefined,
      memo1: undefined,
      list1: undefined,
    })
  }
  return result
}
