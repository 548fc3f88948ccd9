/**
 * A compiled, indexed Cedar policy set. Each policy is filed under the most selective entity
 * named in its scope (principal, then resource, then action), so a request only visits the
 * buckets of its principal, resource and action and of their ancestors, plus the policies whose
 * scope names no entity at all.
 */
import {
  compileExpr,
  type EntityData,
  type EntityLookup,
  type Env,
  entityIn,
  type Fn,
} from './compile.ts'
import { CedarError, UnsupportedPolicyError } from './errors.ts'
import { EntityValue, entityFromJson, RecordValue, type Value } from './values.ts'

/** Cedar's JSON policy form (cedar-wasm `PolicyJson`), kept loose: it is validated by compiling. */
/** A node of cedar's JSON policy form; its shape is checked by the compiler, not by types. */
// biome-ignore lint/suspicious/noExplicitAny: cedar's JSON AST is validated structurally while compiling
export type JsonNode = Record<string, any>

export interface PolicyJson {
  effect: 'permit' | 'forbid'
  principal: JsonNode
  action: JsonNode
  resource: JsonNode
  conditions: { kind: 'when' | 'unless'; body: JsonNode }[]
  annotations?: Record<string, string>
}

export interface PolicySource {
  id: string
  json: PolicyJson
}

export interface EvalResult {
  allow: boolean
  /** Satisfied forbids when denied by one, satisfied permits when allowed, else empty. */
  determining: string[]
  errors: { policy: string; message: string }[]
}

export interface EvalRequest {
  principal: EntityValue
  action: EntityValue
  resource: EntityValue
  context: RecordValue
}

type Check = (env: Env) => boolean

/** A scope slot in plain form: any entity (or already checked by the index), `==` or `in`. */
const ANY = 0
const EQ = 1
const IN = 2
type SlotOp = typeof ANY | typeof EQ | typeof IN

/**
 * Most policies' scopes (every role binding's) are plain `==`/`in` one entity per slot: those are
 * kept as data and checked by `plainScope`, one monomorphic function for all of them, instead of
 * one closure per policy and slot. `scope` holds the closures for the rest (`is`, action lists).
 */
interface Compiled {
  /** Last request serial that visited this policy (dedupe across action buckets). */
  seen: number
  // Fields in the order a visit reads them: the object is usually a cache miss, and the first
  // line holds everything a policy whose scope does not match needs.
  readonly scope: Check | undefined
  readonly aOp: SlotOp
  readonly aKey: string
  readonly rOp: SlotOp
  readonly rKey: string
  readonly pOp: SlotOp
  readonly pKey: string
  readonly condition: Fn | undefined
  readonly forbid: boolean
  readonly id: string
}

type Slot = 'principal' | 'resource'

function scopeEntity(c: JsonNode): EntityValue | undefined {
  if (c.op === '==' || c.op === 'in') {
    if ('slot' in c) throw new UnsupportedPolicyError('template slots are not supported')
    if ('entity' in c) return entityFromJson(c.entity)
  }
  if (c.op === 'is' && c.in) {
    if ('slot' in c.in) throw new UnsupportedPolicyError('template slots are not supported')
    return entityFromJson(c.in.entity)
  }
  return undefined
}

function compileScope(slot: Slot, c: JsonNode, indexed = false): Check | undefined {
  const get = slot === 'principal' ? (env: Env) => env.principal : (env: Env) => env.resource
  const target = scopeEntity(c)
  switch (c.op) {
    case 'All':
      return undefined
    case '==':
      return (env) => get(env).key === target!.key
    case 'in':
      // Reached through the index bucket of `target` (the entity itself or one of its
      // ancestors): `in` already holds.
      if (indexed) return undefined
      return (env) => entityIn(env.entities, get(env), target!)
    case 'is': {
      const type: string = c.entity_type
      if (!target || indexed) return (env) => get(env).type === type
      return (env) => {
        const e = get(env)
        return e.type === type && entityIn(env.entities, e, target)
      }
    }
  }
  throw new UnsupportedPolicyError(`unknown ${slot} constraint ${JSON.stringify(c.op)}`)
}

function actionTargets(c: JsonNode): EntityValue[] | undefined {
  if (c.op === 'All') return undefined
  if (c.op === '==') return [entityFromJson(c.entity)]
  if (c.op === 'in')
    return 'entities' in c ? c.entities.map(entityFromJson) : [entityFromJson(c.entity)]
  throw new UnsupportedPolicyError(`unknown action constraint ${JSON.stringify(c.op)}`)
}

function compileAction(c: JsonNode): Check | undefined {
  const targets = actionTargets(c)
  if (!targets) return undefined
  if (c.op === '==') {
    const key = targets[0]!.key
    return (env) => env.action.key === key
  }
  // `action in [A, B, …]`: the action itself or one of its (few) groups is in the list.
  const keys = new Set(targets.map((t) => t.key))
  return (env) => {
    if (keys.has(env.action.key)) return true
    const data = env.entities.get(env.action.key)
    if (!data) return false
    for (const a of data.ancestors) if (keys.has(a)) return true
    return false
  }
}

function compileCondition(conditions: PolicyJson['conditions']): Fn | undefined {
  const clauses = conditions.map((c) => {
    const body = compileExpr(c.body)
    return c.kind === 'when' ? body : (env: Env) => !asBool(body(env))
  })
  if (clauses.length === 0) return undefined
  if (clauses.length === 1) {
    const only = clauses[0]!
    return (env) => asBool(only(env))
  }
  return (env) => {
    for (let i = 0; i < clauses.length; i++) if (!asBool(clauses[i]!(env))) return false
    return true
  }
}

function asBool(v: unknown): boolean {
  if (typeof v !== 'boolean')
    throw new CedarError(
      `type error: expected bool, got ${typeof v === 'object' ? 'non-bool' : typeof v}`,
    )
  return v
}

/** The plain form of a principal/resource constraint (see `Compiled`), if it has one. */
function plainSlot(c: JsonNode, indexed: boolean): [SlotOp, string] | undefined {
  if (c.op === 'All') return [ANY, '']
  if (c.op !== '==' && c.op !== 'in') return undefined
  const target = scopeEntity(c)!
  if (c.op === 'in') return indexed ? [ANY, ''] : [IN, target.key]
  return [EQ, target.key]
}

function plainAction(c: JsonNode): [SlotOp, string] | undefined {
  if (c.op === 'All') return [ANY, '']
  const targets = actionTargets(c)!
  if (targets.length !== 1) return undefined
  return [c.op === '==' ? EQ : IN, targets[0]!.key]
}

/**
 * One string object per scope key across policies and sets: the thousands of role bindings naming
 * the same role's action group then compare and hash one hot string instead of each their own
 * copy. Bounded; clearing it only loses sharing.
 */
const interned = new Map<string, string>()
function intern(key: string): string {
  const known = interned.get(key)
  if (known !== undefined) return known
  if (interned.size >= 50_000) interned.clear()
  interned.set(key, key)
  return key
}

/** `e == key` or `e in key` (the entity itself or one of its ancestors), as `entityIn`. */
function slotHolds(env: Env, e: EntityValue, op: SlotOp, key: string): boolean {
  if (op === ANY || e.key === key) return true
  if (op === EQ) return false
  const data = env.entities.get(e.key)
  return data?.ancestors.has(key) === true
}

function plainScope(p: Compiled, env: Env): boolean {
  return (
    slotHolds(env, env.action, p.aOp, p.aKey) &&
    slotHolds(env, env.resource, p.rOp, p.rKey) &&
    slotHolds(env, env.principal, p.pOp, p.pKey)
  )
}

function all(checks: (Check | undefined)[]): Check {
  const present = checks.filter((c): c is Check => c !== undefined)
  if (present.length === 0) return () => true
  if (present.length === 1) return present[0]!
  return (env) => {
    for (let i = 0; i < present.length; i++) if (!present[i]!(env)) return false
    return true
  }
}

export class CompiledPolicySet {
  readonly ids: readonly string[]
  readonly #byPrincipal = new Buckets()
  readonly #byResource = new Buckets()
  readonly #byAction = new Buckets()
  readonly #unscoped: Compiled[] = []
  /**
   * Which indexes hold any policy, as plain fields: reading a Map's size per decision costs two
   * cache misses per index (the Map and its table) for sets that are visited at random.
   */
  readonly #anyPrincipal: boolean
  readonly #anyResource: boolean
  readonly #anyAction: boolean
  readonly #anyUnscoped: boolean

  constructor(sources: readonly PolicySource[]) {
    const ids = new Set<string>()
    for (const { id, json } of sources) {
      if (ids.has(id)) throw new UnsupportedPolicyError(`duplicate policy id ${JSON.stringify(id)}`)
      ids.add(id)
      if (json.effect !== 'permit' && json.effect !== 'forbid')
        throw new UnsupportedPolicyError(`policy ${id}: unknown effect`)
      const principal = scopeEntity(json.principal)
      const resource = scopeEntity(json.resource)
      const actions = actionTargets(json.action)
      // The slot a policy is filed under is checked by the index itself (see compileScope).
      const via: Slot | 'action' | undefined = principal
        ? 'principal'
        : resource
          ? 'resource'
          : actions
            ? 'action'
            : undefined
      const closures = all([
        compileScope('principal', json.principal, via === 'principal'),
        compileAction(json.action),
        compileScope('resource', json.resource, via === 'resource'),
      ])
      const pPlain = plainSlot(json.principal, via === 'principal')
      const aPlain = plainAction(json.action)
      const rPlain = plainSlot(json.resource, via === 'resource')
      const plain = pPlain && aPlain && rPlain
      const p: Compiled = {
        seen: 0,
        scope: plain ? undefined : closures,
        aOp: aPlain?.[0] ?? ANY,
        aKey: intern(aPlain?.[1] ?? ''),
        rOp: rPlain?.[0] ?? ANY,
        rKey: intern(rPlain?.[1] ?? ''),
        pOp: pPlain?.[0] ?? ANY,
        pKey: intern(pPlain?.[1] ?? ''),
        condition: compileCondition(json.conditions ?? []),
        forbid: json.effect === 'forbid',
        id,
      }
      if (via === 'principal') this.#byPrincipal.add(principal!.key, p)
      else if (via === 'resource') this.#byResource.add(resource!.key, p)
      else if (via === 'action') for (const a of actions!) this.#byAction.add(a.key, p)
      else this.#unscoped.push(p)
    }
    this.ids = [...ids]
    this.#anyPrincipal = this.#byPrincipal.size > 0
    this.#anyResource = this.#byResource.size > 0
    this.#anyAction = this.#byAction.size > 0
    this.#anyUnscoped = this.#unscoped.length > 0
  }

  get size() {
    return this.ids.length
  }

  evaluate(request: EvalRequest, entities: EntityLookup): EvalResult {
    return evaluateSets([this], request, entities)
  }

  /** Adds this set's satisfied policies and errors for `env` to `out`. */
  collect(env: Env, out: Outcome) {
    if (this.#anyPrincipal) this.#byPrincipal.visit(env.principal, env, out)
    if (this.#anyResource) this.#byResource.visit(env.resource, env, out)
    if (this.#anyAction) this.#byAction.visit(env.action, env, out)
    if (this.#anyUnscoped) visit(this.#unscoped, env, out)
  }
}

/** Every policy visited in one evaluation carries this number (dedupe across buckets). */
let serial = 0

/**
 * Cedar's authorization over the union of several policy sets (e.g. the platform's and a
 * tenant's): forbid overrides permit, default deny, erroring policies skipped and reported.
 */
export function evaluateSets(
  sets: readonly CompiledPolicySet[],
  request: EvalRequest,
  entities: EntityLookup,
): EvalResult {
  const env: Env = {
    principal: request.principal,
    action: request.action,
    resource: request.resource,
    context: request.context,
    entities: new RequestLookup(entities, request),
  }
  serial = (serial + 1) | 0
  const out: Outcome = { serial, permits: [], forbids: [], errors: [] }
  for (let i = 0; i < sets.length; i++) sets[i]!.collect(env, out)
  const { permits, forbids, errors } = out
  if (forbids.length > 0) return { allow: false, determining: forbids, errors }
  if (permits.length > 0) return { allow: true, determining: permits, errors }
  return { allow: false, determining: [], errors }
}

/**
 * The request's entity lookup with its principal, action and resource resolved once: scopes and
 * conditions read these three again and again (`principal.tenant`, `resource has …`), and each
 * miss here is a lookup in a cache of every entity of every tenant.
 */
class RequestLookup implements EntityLookup {
  readonly #inner: EntityLookup
  readonly #p: string
  readonly #pData: EntityData | undefined
  readonly #r: string
  readonly #rData: EntityData | undefined
  readonly #a: string
  readonly #aData: EntityData | undefined

  constructor(inner: EntityLookup, request: EvalRequest) {
    this.#inner = inner
    this.#p = request.principal.key
    this.#pData = inner.get(this.#p)
    this.#r = request.resource.key
    this.#rData = inner.get(this.#r)
    this.#a = request.action.key
    this.#aData = inner.get(this.#a)
  }

  get(key: string): EntityData | undefined {
    if (key === this.#p) return this.#pData
    if (key === this.#r) return this.#rData
    if (key === this.#a) return this.#aData
    return this.#inner.get(key)
  }
}

/**
 * Policies filed under one scope slot, by entity key, with a memo of the policies that apply to
 * each entity seen (its own bucket plus its ancestors' buckets). The memo is kept on the entity's
 * data object (two slots, see EntityData): the entity cache replaces that object whenever the
 * hierarchy changes, and a policy change builds new Buckets, so a memo entry can never outlive
 * what it was built from (a replaced set's entries stay, unused, until the entity changes). An
 * entity visited by more indexes than that falls back to a WeakMap per index. On the data object
 * rather than in a WeakMap: no hash lookup per slot and decision, and no ephemeron table of every
 * entity for the GC to trace.
 */
class Buckets {
  readonly #byKey = new Map<string, Compiled[]>()
  readonly #overflow = new WeakMap<EntityData, readonly Compiled[]>()

  get size() {
    return this.#byKey.size
  }

  add(key: string, p: Compiled) {
    const list = this.#byKey.get(key)
    if (list) list.push(p)
    else this.#byKey.set(key, [p])
  }

  visit(e: EntityValue, env: Env, out: Outcome) {
    const data = env.entities.get(e.key)
    if (data === undefined) {
      const own = this.#byKey.get(e.key)
      if (own) visit(own, env, out)
      return
    }
    const list = this.#memoized(data, e)
    if (list.length > 0) visit(list, env, out)
  }

  /**
   * The memo is read before the entity's uid is compared with the request's: a lookup returns an
   * entity's own data for its key (the EntityLookup contract), and that comparison is a cache miss
   * on every decision. Only a memo is built after checking it.
   */
  #memoized(data: EntityData, e: EntityValue): readonly Compiled[] {
    if (data.memo0 === this) return data.list0 as readonly Compiled[]
    if (data.memo1 === this) return data.list1 as readonly Compiled[]
    if (data.uid.key !== e.key) return this.#byKey.get(e.key) ?? NONE
    if (data.memo1 !== undefined || !Object.isExtensible(data)) {
      // Entities that every tenant's set visits (the schema's actions) use this index's own map.
      let list = this.#overflow.get(data)
      if (!list) {
        list = this.#applicable(e.key, data.ancestors)
        this.#overflow.set(data, list)
      }
      return list
    }
    const list = this.#applicable(e.key, data.ancestors)
    if (data.memo0 === undefined) {
      data.memo0 = this
      data.list0 = list
    } else {
      data.memo1 = this
      data.list1 = list
    }
    return list
  }

  #applicable(key: string, ancestors: ReadonlySet<string>): readonly Compiled[] {
    const out: Compiled[] = []
    const own = this.#byKey.get(key)
    if (own) out.push(...own)
    for (const k of ancestors) {
      const list = this.#byKey.get(k)
      if (list) out.push(...list)
    }
    return out.length > 0 ? out : NONE
  }
}

/**
 * A RequestLookup kept alive for the life of the process. V8 holds the hidden classes that a
 * class's fields transition through only weakly: if no instance survives a full GC they are
 * cleared, and every optimized function that saw them is deoptimized (then re-optimized, slowly,
 * on the next decisions). Per-decision objects are all dead by the next GC, so one survivor keeps
 * the classes, and the decisions right after a GC at full speed.
 */
export const KEEP_REQUEST_LOOKUP = new RequestLookup(new Map(), {
  principal: new EntityValue('', ''),
  action: new EntityValue('', ''),
  resource: new EntityValue('', ''),
  context: new RecordValue(new Map()),
})

const NONE: readonly Compiled[] = Object.freeze([])

export interface Outcome {
  serial: number
  permits: string[]
  forbids: string[]
  errors: { policy: string; message: string }[]
}

function visit(list: readonly Compiled[], env: Env, out: Outcome) {
  for (let i = 0; i < list.length; i++) {
    const p = list[i]!
    if (p.seen === out.serial) continue
    p.seen = out.serial
    if (p.scope === undefined ? !plainScope(p, env) : !p.scope(env)) continue
    if (p.condition) {
      let ok: Value
      try {
        ok = p.condition(env)
      } catch (err) {
        if (!(err instanceof CedarError)) throw err
        out.errors.push({ policy: p.id, message: err.message })
        continue
      }
      if (ok !== true) continue
    }
    ;(p.forbid ? out.forbids : out.permits).push(p.id)
  }
}

export { EntityValue }
