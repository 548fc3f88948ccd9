/**
 * A compiled, indexed Cedar policy set. Each policy is filed under the most selective entity
 * named in its scope (principal, then resource, then action), so a request only visits the
 * buckets of its principal, resource and action and of their ancestors, plus the policies whose
 * scope names no entity at all.
 */
import { compileExpr, type EntityLookup, type Env, entityIn, type Fn } from './compile.ts'
import { CedarError, UnsupportedPolicyError } from './errors.ts'
import { EntityValue, entityFromJson, type RecordValue, type Value } from './values.ts'

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

interface Compiled {
  readonly id: string
  readonly forbid: boolean
  readonly scope: Check
  readonly condition: Fn | undefined
  /** Last request serial that visited this policy (dedupe across action buckets). */
  seen: number
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

function compileScope(slot: Slot, c: JsonNode): Check | undefined {
  const get = slot === 'principal' ? (env: Env) => env.principal : (env: Env) => env.resource
  const target = scopeEntity(c)
  switch (c.op) {
    case 'All':
      return undefined
    case '==':
      return (env) => get(env).key === target!.key
    case 'in':
      return (env) => entityIn(env.entities, get(env), target!)
    case 'is': {
      const type: string = c.entity_type
      if (!target) return (env) => get(env).type === type
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
  return (env) => targets.some((t) => entityIn(env.entities, env.action, t))
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
    for (const c of clauses) if (!asBool(c(env))) return false
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

function all(checks: (Check | undefined)[]): Check {
  const present = checks.filter((c): c is Check => c !== undefined)
  if (present.length === 0) return () => true
  if (present.length === 1) return present[0]!
  return (env) => {
    for (const c of present) if (!c(env)) return false
    return true
  }
}

function addTo(map: Map<string, Compiled[]>, key: string, p: Compiled) {
  const list = map.get(key)
  if (list) list.push(p)
  else map.set(key, [p])
}

export class CompiledPolicySet {
  readonly ids: readonly string[]
  readonly #byPrincipal = new Map<string, Compiled[]>()
  readonly #byResource = new Map<string, Compiled[]>()
  readonly #byAction = new Map<string, Compiled[]>()
  readonly #unscoped: Compiled[] = []
  #serial = 0

  constructor(sources: readonly PolicySource[]) {
    const ids = new Set<string>()
    for (const { id, json } of sources) {
      if (ids.has(id)) throw new UnsupportedPolicyError(`duplicate policy id ${JSON.stringify(id)}`)
      ids.add(id)
      if (json.effect !== 'permit' && json.effect !== 'forbid')
        throw new UnsupportedPolicyError(`policy ${id}: unknown effect`)
      const p: Compiled = {
        id,
        forbid: json.effect === 'forbid',
        scope: all([
          compileScope('principal', json.principal),
          compileAction(json.action),
          compileScope('resource', json.resource),
        ]),
        condition: compileCondition(json.conditions ?? []),
        seen: 0,
      }
      const principal = scopeEntity(json.principal)
      const resource = scopeEntity(json.resource)
      const actions = actionTargets(json.action)
      if (principal) addTo(this.#byPrincipal, principal.key, p)
      else if (resource) addTo(this.#byResource, resource.key, p)
      else if (actions) for (const a of actions) addTo(this.#byAction, a.key, p)
      else this.#unscoped.push(p)
    }
    this.ids = [...ids]
  }

  get size() {
    return this.ids.length
  }

  evaluate(request: EvalRequest, entities: EntityLookup): EvalResult {
    const env: Env = {
      principal: request.principal,
      action: request.action,
      resource: request.resource,
      context: request.context,
      entities,
    }
    const out: Outcome = { serial: ++this.#serial, permits: [], forbids: [], errors: [] }
    if (this.#byPrincipal.size > 0)
      this.#visitEntity(this.#byPrincipal, request.principal, env, out)
    if (this.#byResource.size > 0) this.#visitEntity(this.#byResource, request.resource, env, out)
    if (this.#byAction.size > 0) this.#visitEntity(this.#byAction, request.action, env, out)
    visit(this.#unscoped, env, out)
    const { permits, forbids, errors } = out
    if (forbids.length > 0) return { allow: false, determining: forbids, errors }
    if (permits.length > 0) return { allow: true, determining: permits, errors }
    return { allow: false, determining: [], errors }
  }

  #visitEntity(map: Map<string, Compiled[]>, e: EntityValue, env: Env, out: Outcome) {
    const own = map.get(e.key)
    if (own) visit(own, env, out)
    const data = env.entities.get(e.key)
    if (!data) return
    for (const k of data.ancestors) {
      const list = map.get(k)
      if (list) visit(list, env, out)
    }
  }
}

interface Outcome {
  serial: number
  permits: string[]
  forbids: string[]
  errors: { policy: string; message: string }[]
}

function visit(list: Compiled[], env: Env, out: Outcome) {
  for (const p of list) {
    if (p.seen === out.serial) continue
    p.seen = out.serial
    if (!p.scope(env)) continue
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
