/**
 * The policy decision point. A decision: sync the cache, load the request's slice of the entity
 * hierarchy, pick the resource's tenant policies, evaluate, explain. Every failure on the way is
 * a deny with a reason (fail closed); errors in the platform guard rails deny as well, even
 * though Cedar itself would merely skip an erroring forbid.
 */
import type { Logger } from 'pino'
import type { Clock } from '../core/clock.ts'
import { type EntityCache, type StoredEntity, storedFromRecord } from './cache.ts'
import type { EntityData, EntityLookup } from './cedar/compile.ts'
import { contextFromJson, entitiesFromJson } from './cedar/entities.ts'
import { type CompiledPolicySet, type EvalResult, evaluateSets } from './cedar/policyset.ts'
import { EntityValue, RecordValue, SetValue, type Value } from './cedar/values.ts'
import type { AuthorizationRequest, Decision, EntityUid, Pdp } from './contract.ts'
import type { PolicySets } from './policysets.ts'
import { ACTIONS, actionEntities, NAMESPACE } from './schema.ts'

export const ACTION_TYPE = `${NAMESPACE}::Action`
const PLATFORM_PREFIX = 'platform.'

/** Action entities of the schema (role and guard-rail groups), shared by every decision. */
const ACTION_ENTITIES: EntityLookup = entitiesFromJson(actionEntities())
const KNOWN_ACTIONS = new Set(ACTIONS)
const RESERVED_TYPES = new Set([`${NAMESPACE}::RoleBinding`, ACTION_TYPE])

export interface RecordedRequest {
  tenant: string
  at: Date
  request: AuthorizationRequest
}

/**
 * Bounded log of recent requests per tenant, replayed by policy dry-runs. A request is kept as its
 * JSON text: a snapshot that later changes to the caller's objects cannot reach, and one flat
 * string for the garbage collector to move to the old generation instead of the request's whole
 * object graph (which, kept for a thousand requests, every request's objects outlived young).
 */
export class RecentRequests {
  readonly #perTenant: number
  /** Per tenant a ring: `next` is where the following request goes once the ring is full. */
  readonly #byTenant = new Map<string, { at: number[]; json: string[]; next: number }>()
  constructor(perTenant = 1000) {
    this.#perTenant = perTenant
  }
  add(r: RecordedRequest) {
    if (this.#perTenant <= 0) return
    let ring = this.#byTenant.get(r.tenant)
    if (!ring) {
      ring = { at: [], json: [], next: 0 }
      this.#byTenant.set(r.tenant, ring)
    }
    // Best effort, for dry-runs only: a request that cannot be written as JSON (a BigInt, a cycle)
    // is not recorded, and never changes the decision it belongs to.
    let json: string
    try {
      json = JSON.stringify(r.request)
    } catch {
      return
    }
    if (ring.json.length < this.#perTenant) {
      ring.at.push(r.at.getTime())
      ring.json.push(json)
    } else {
      ring.at[ring.next] = r.at.getTime()
      ring.json[ring.next] = json
      ring.next = (ring.next + 1) % this.#perTenant
    }
  }
  /** The tenant's recent requests, oldest first. */
  of(tenant: string): RecordedRequest[] {
    const ring = this.#byTenant.get(tenant)
    if (!ring) return []
    const out: RecordedRequest[] = []
    for (let i = 0; i < ring.json.length; i++) {
      const k = (ring.next + i) % ring.json.length
      out.push({ tenant, at: new Date(ring.at[k]!), request: JSON.parse(ring.json[k]!) })
    }
    return out
  }
}

export interface PdpDeps {
  cache: EntityCache
  sets: PolicySets
  clock: Clock
  log?: Logger
  recent?: RecentRequests
}

export interface BatchPdp extends Pdp {
  decideBatch(requests: readonly AuthorizationRequest[]): Promise<Decision[]>
}

const deny = (reason: string, determining: string[] = [], errors: Decision['errors'] = []) =>
  ({ decision: 'deny', determining, errors, reason }) satisfies Decision

function validUid(u: EntityUid | undefined): u is EntityUid {
  return !!u && typeof u.type === 'string' && typeof u.id === 'string' && u.type.length > 0
}

/** Entities named in the context (top level and inside sets/records), to load with the slice. */
function contextEntities(v: Value, out: EntityValue[], depth = 0) {
  if (depth > 4) return
  if (v instanceof EntityValue) out.push(v)
  else if (v instanceof SetValue) for (const x of v.items) contextEntities(x, out, depth + 1)
  else if (v instanceof RecordValue)
    for (const x of v.attrs.values()) contextEntities(x, out, depth + 1)
}

/** Lookup over a request's entities (cache or snapshot) plus the schema's action entities. */
export class SliceLookup implements EntityLookup {
  readonly #inner: EntityLookup
  constructor(inner: EntityLookup) {
    this.#inner = inner
  }
  get(key: string): EntityData | undefined {
    return ACTION_ENTITIES.get(key) ?? this.#inner.get(key)
  }
}

/** One SliceLookup alive for good: see KEEP_REQUEST_LOOKUP in cedar/policyset.ts. */
export const KEEP_SLICE_LOOKUP = new SliceLookup(ACTION_ENTITIES)

export function explain(r: EvalResult): Decision {
  const platformErrors =
    r.errors.length > 0 ? r.errors.filter((e) => e.policy.startsWith(PLATFORM_PREFIX)) : r.errors
  if (platformErrors.length > 0)
    return deny(
      `a platform guard rail could not be evaluated (${platformErrors.map((e) => e.policy).join(', ')})`,
      platformErrors.map((e) => e.policy),
      r.errors,
    )
  if (r.allow)
    return {
      decision: 'allow',
      determining: r.determining,
      errors: r.errors,
      reason: `allowed by ${r.determining.join(', ')}`,
    }
  if (r.determining.length > 0)
    return deny(`denied by ${r.determining.join(', ')}`, r.determining, r.errors)
  return deny('no policy permits this request', [], r.errors)
}

export interface PreparedRequest {
  tenant: string
  /** Entities the decision depends on; with `live`, the lookup is the shared cache. */
  roots: EntityValue[]
  live: boolean
  principal: EntityValue
  action: EntityValue
  resource: EntityValue
  context: RecordValue
  lookup: EntityLookup
}

/** Evaluates a prepared request against a tenant's global and tenant policy sets. */
export function evaluatePrepared(
  p: PreparedRequest,
  s: { global: CompiledPolicySet; tenant: CompiledPolicySet },
): Decision {
  const req = { principal: p.principal, action: p.action, resource: p.resource, context: p.context }
  return explain(evaluateSets([s.global, s.tenant], req, p.lookup))
}

export function createPdp(deps: PdpDeps): BatchPdp & {
  prepare(request: AuthorizationRequest, useCache: boolean): Promise<PreparedRequest | Decision>
  evaluate(
    p: PreparedRequest,
    sets: { global: CompiledPolicySet; tenant: CompiledPolicySet },
  ): Decision
} {
  const { cache, sets, clock, log, recent } = deps

  async function prepare(
    request: AuthorizationRequest,
    useCache: boolean,
  ): Promise<PreparedRequest | Decision> {
    if (!validUid(request?.principal) || !validUid(request.action) || !validUid(request.resource))
      return deny('malformed request: principal, action and resource need a type and an id')
    if (request.action.type !== ACTION_TYPE || !KNOWN_ACTIONS.has(request.action.id))
      return deny(`unknown action ${JSON.stringify(request.action.id)}`)
    const principal = new EntityValue(request.principal.type, request.principal.id)
    const resource = new EntityValue(request.resource.type, request.resource.id)
    const action = new EntityValue(request.action.type, request.action.id)
    // Time attributes come from our clock, never from the caller (time windows cannot be faked).
    const at = clock.now()
    const raw = {
      ...(request.context ?? {}),
      now: Math.floor(at.getTime() / 1000),
      hour: at.getUTCHours(),
      weekday: at.getUTCDay(),
    }
    const context = contextFromJson(raw)
    const requestEntities: StoredEntity[] = (request.entities ?? []).map((e) => storedFromRecord(e))
    // A request-scoped entity describes something that does not exist yet (the resource being
    // created): it may never shadow a stored entity, the principal, a binding group or an action.
    if (requestEntities.length > 0) {
      if (
        requestEntities.some((e) => e.uid.key === principal.key || RESERVED_TYPES.has(e.uid.type))
      )
        return deny('request-scoped entities cannot describe the principal, bindings or actions')
      if (await cache.anyStored(requestEntities.map((e) => e.uid)))
        return deny('a request-scoped entity shadows a stored entity')
    }
    const roots = [principal, resource]
    contextEntities(context, roots)
    let entities: EntityLookup | undefined
    if (useCache && requestEntities.length === 0) {
      entities = cache.lookup(roots)
      if (!entities && (await cache.load(roots))) entities = cache.lookup(roots)
    }
    const live = entities !== undefined
    entities ??= await cache.slice(roots, requestEntities, useCache)
    const p = entities.get(principal.key)
    const r = entities.get(resource.key)
    if (!p) return deny('unknown principal')
    if (!r) return deny('unknown resource')
    const tenant = r.attrs.get('tenant')
    if (typeof tenant !== 'string') return deny('the resource has no tenant')
    const lookup = new SliceLookup(entities)
    return { tenant, roots, live, principal, action, resource, context, lookup }
  }

  const evaluate = evaluatePrepared

  async function decideOne(request: AuthorizationRequest, useCache: boolean): Promise<Decision> {
    // A live (cache) lookup must still be complete when evaluation starts: a change notice may
    // have dropped entries while we awaited the policy sets. Retry, then read uncached.
    for (let attempt = 0; attempt < 4; attempt++) {
      const cached = useCache && attempt < 3
      const prepared = await prepare(request, cached)
      if ('decision' in prepared) return prepared
      const policySets = await sets.for(prepared.tenant, cached)
      if (prepared.live && !cache.lookup(prepared.roots)) continue
      const decision = evaluate(prepared, policySets)
      recent?.add({ tenant: prepared.tenant, at: clock.now(), request })
      return decision
    }
    return deny('the entity store kept changing during the decision')
  }

  async function guarded(request: AuthorizationRequest, useCache: boolean): Promise<Decision> {
    try {
      return await decideOne(request, useCache)
    } catch (err) {
      log?.error({ err: (err as Error)?.name }, 'authz: decision failed, denying')
      return deny('the authorization service failed to evaluate the request')
    }
  }

  async function syncOrNull(): Promise<boolean | null> {
    try {
      return await cache.sync()
    } catch (err) {
      log?.error({ err: (err as Error)?.name }, 'authz: entity store unavailable, denying')
      return null
    }
  }

  return {
    prepare,
    evaluate,
    async decide(request) {
      const useCache = await syncOrNull()
      if (useCache === null) return deny('the authorization service is unavailable')
      return guarded(request, useCache)
    },
    async decideBatch(requests) {
      const useCache = await syncOrNull()
      if (useCache === null)
        return requests.map(() => deny('the authorization service is unavailable'))
      const out: Decision[] = []
      for (const r of requests) out.push(await guarded(r, useCache))
      return out
    },
  }
}
