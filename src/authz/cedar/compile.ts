/**
 * Compiles Cedar's JSON expression form (as produced by cedar-wasm's `policyToJson`) into
 * JavaScript closures. Each closure either returns a value or throws an CedarError, exactly where
 * the reference evaluator raises an error.
 */
import { CedarError, UnsupportedPolicyError } from './errors.ts'
import { Decimal, IpAddr } from './extensions.ts'
import type { JsonNode } from './policyset.ts'
import {
  EntityValue,
  isLong,
  type Long,
  normalizeLong,
  RecordValue,
  SetValue,
  typeError,
  type Value,
  valueEquals,
  valueFromJson,
} from './values.ts'

export interface EntityData {
  readonly uid: EntityValue
  readonly attrs: ReadonlyMap<string, Value>
  /** Keys of every ancestor (transitive closure), not including the entity itself. */
  readonly ancestors: ReadonlySet<string>
  readonly tags: ReadonlyMap<string, Value>
  /**
   * The evaluator's memo of the policies that apply to this entity (policyset.ts): two slots of
   * (policy index, its list), inline because this object is already in cache when they are read.
   * They live on the entity's data because that object is replaced whenever the entity or its
   * hierarchy changes, so a memo can never outlive what it was computed from.
   */
  memo0?: object | undefined
  list0?: unknown
  memo1?: object | undefined
  list1?: unknown
}

export interface EntityLookup {
  /** The data of the entity whose uid has this key (never another entity's), if known. */
  get(key: string): EntityData | undefined
}

export interface Env {
  readonly principal: EntityValue
  readonly action: EntityValue
  readonly resource: EntityValue
  readonly context: RecordValue
  readonly entities: EntityLookup
}

export type Fn = (env: Env) => Value
type Expr = JsonNode

export function entityIn(entities: EntityLookup, left: EntityValue, right: EntityValue): boolean {
  if (left.key === right.key) return true
  const data = entities.get(left.key)
  return data?.ancestors.has(right.key) === true
}

function asBool(v: Value): boolean {
  if (typeof v !== 'boolean') throw typeError('bool', v)
  return v
}
function asLong(v: Value): Long {
  if (!isLong(v)) throw typeError('long', v)
  return v
}
function asString(v: Value): string {
  if (typeof v !== 'string') throw typeError('string', v)
  return v
}
function asEntity(v: Value): EntityValue {
  if (!(v instanceof EntityValue)) throw typeError('(entity of type `any_entity_type`)', v)
  return v
}
function asSet(v: Value): SetValue {
  if (!(v instanceof SetValue)) throw typeError('set', v)
  return v
}
function asIp(v: Value): IpAddr {
  if (!(v instanceof IpAddr)) throw typeError('ipaddr', v)
  return v
}
function asDecimal(v: Value): Decimal {
  if (!(v instanceof Decimal)) throw typeError('decimal', v)
  return v
}

function entityData(env: Env, e: EntityValue): EntityData {
  const data = env.entities.get(e.key)
  if (!data) throw new CedarError(`entity \`${e}\` does not exist`)
  return data
}

/** `e.attr` on an entity or a record. */
export function getAttr(env: Env, v: Value, attr: string): Value {
  if (v instanceof EntityValue) {
    const found = entityData(env, v).attrs.get(attr)
    if (found === undefined)
      throw new CedarError(`\`${v}\` does not have the attribute \`${attr}\``)
    return found
  }
  if (v instanceof RecordValue) {
    const found = v.attrs.get(attr)
    if (found === undefined) throw new CedarError(`record does not have the attribute \`${attr}\``)
    return found
  }
  throw typeError('(entity or record)', v)
}

function hasAttr(env: Env, v: Value, attr: string): boolean {
  if (v instanceof EntityValue) return env.entities.get(v.key)?.attrs.has(attr) ?? false
  if (v instanceof RecordValue) return v.attrs.has(attr)
  throw typeError('(entity or record)', v)
}

function arith(op: '+' | '-' | '*', a: Long, b: Long): Long {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = op === '+' ? a + b : op === '-' ? a - b : a * b
    if (Number.isSafeInteger(r)) return r === 0 ? 0 : r // no -0
  }
  const x = BigInt(a)
  const y = BigInt(b)
  const verb = op === '+' ? 'add' : op === '-' ? 'subtract' : 'multiply'
  return normalizeLong(op === '+' ? x + y : op === '-' ? x - y : x * y, verb)
}

function inValue(env: Env, left: Value, right: Value): boolean {
  const l = asEntity(left)
  if (right instanceof SetValue) {
    const targets = right.items.map(asEntity)
    for (const t of targets) if (entityIn(env.entities, l, t)) return true
    return false
  }
  return entityIn(env.entities, l, asEntity(right))
}

const WILDCARD = -1

/** Glob match without backtracking blow-up: O(|s|·|p|) worst case. */
function compileLike(pattern: unknown[]): (s: string) => boolean {
  const p: number[] = []
  for (const el of pattern) {
    if (el === 'Wildcard') p.push(WILDCARD)
    else {
      const lit = (el as { Literal: string }).Literal
      for (let i = 0; i < lit.length; i++) p.push(lit.charCodeAt(i))
    }
  }
  return (s) => {
    let si = 0
    let pi = 0
    let star = -1
    let mark = 0
    while (si < s.length) {
      if (pi < p.length && p[pi] !== WILDCARD && p[pi] === s.charCodeAt(si)) {
        si++
        pi++
      } else if (pi < p.length && p[pi] === WILDCARD) {
        star = pi++
        mark = si
      } else if (star >= 0) {
        pi = star + 1
        si = ++mark
      } else return false
    }
    while (pi < p.length && p[pi] === WILDCARD) pi++
    return pi === p.length
  }
}

function compare(op: string, a: Value, b: Value): boolean {
  const x = asLong(a)
  const y = asLong(b)
  switch (op) {
    case '<':
      return x < y
    case '<=':
      return x <= y
    case '>':
      return x > y
    default:
      return x >= y
  }
}

type Ext = (args: Value[]) => Value
const extensions: Record<string, { arity: number; fn: Ext }> = {
  ip: { arity: 1, fn: ([s]) => IpAddr.parse(asString(s!)) },
  ipaddr: { arity: 1, fn: ([s]) => IpAddr.parse(asString(s!)) },
  decimal: { arity: 1, fn: ([s]) => Decimal.parse(asString(s!)) },
  isIpv4: { arity: 1, fn: ([a]) => !asIp(a!).v6 },
  isIpv6: { arity: 1, fn: ([a]) => asIp(a!).v6 },
  isLoopback: { arity: 1, fn: ([a]) => asIp(a!).isLoopback() },
  isMulticast: { arity: 1, fn: ([a]) => asIp(a!).isMulticast() },
  isInRange: { arity: 2, fn: ([a, b]) => asIp(a!).isInRange(asIp(b!)) },
  lessThan: { arity: 2, fn: ([a, b]) => asDecimal(a!).value < asDecimal(b!).value },
  lessThanOrEqual: { arity: 2, fn: ([a, b]) => asDecimal(a!).value <= asDecimal(b!).value },
  greaterThan: { arity: 2, fn: ([a, b]) => asDecimal(a!).value > asDecimal(b!).value },
  greaterThanOrEqual: { arity: 2, fn: ([a, b]) => asDecimal(a!).value >= asDecimal(b!).value },
}

/** Never read: a constant expression (`Value`) ignores its environment. */
const CONSTANT_ENV = {} as Env

function binary(e: Expr): [Fn, Fn] {
  return [compileExpr(e.left), compileExpr(e.right)]
}

export function compileExpr(expr: Expr): Fn {
  const keys = Object.keys(expr)
  if (keys.length !== 1) throw new UnsupportedPolicyError('malformed expression')
  const op = keys[0]!
  const e = expr[op]
  switch (op) {
    case 'Value': {
      const v = valueFromJson(e)
      return () => v
    }
    case 'Var':
      switch (e) {
        case 'principal':
          return (env) => env.principal
        case 'action':
          return (env) => env.action
        case 'resource':
          return (env) => env.resource
        case 'context':
          return (env) => env.context
      }
      throw new UnsupportedPolicyError(`unknown variable ${e}`)
    case 'Slot':
      throw new UnsupportedPolicyError('template slots are not supported')
    case '!': {
      const a = compileExpr(e.arg)
      return (env) => !asBool(a(env))
    }
    case 'neg': {
      const a = compileExpr(e.arg)
      return (env) => arith('-', 0, asLong(a(env)))
    }
    case '==': {
      const [l, r] = binary(e)
      return (env) => valueEquals(l(env), r(env))
    }
    case '!=': {
      const [l, r] = binary(e)
      return (env) => !valueEquals(l(env), r(env))
    }
    case 'in': {
      const [l, r] = binary(e)
      return (env) => inValue(env, l(env), r(env))
    }
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const [l, r] = binary(e)
      return (env) => compare(op, l(env), r(env))
    }
    case '&&': {
      const [l, r] = binary(e)
      return (env) => asBool(l(env)) && asBool(r(env))
    }
    case '||': {
      const [l, r] = binary(e)
      return (env) => asBool(l(env)) || asBool(r(env))
    }
    case '+':
    case '-':
    case '*': {
      const [l, r] = binary(e)
      return (env) => arith(op, asLong(l(env)), asLong(r(env)))
    }
    case 'contains': {
      const [l, r] = binary(e)
      return (env) => {
        const set = asSet(l(env))
        return set.has(r(env))
      }
    }
    case 'containsAll': {
      const [l, r] = binary(e)
      return (env) => {
        const a = asSet(l(env))
        const b = asSet(r(env))
        return b.items.every((x) => a.has(x))
      }
    }
    case 'containsAny': {
      const [l, r] = binary(e)
      return (env) => {
        const a = asSet(l(env))
        const b = asSet(r(env))
        return b.items.some((x) => a.has(x))
      }
    }
    case 'isEmpty': {
      const a = compileExpr(e.arg)
      return (env) => asSet(a(env)).items.length === 0
    }
    case 'getTag': {
      const [l, r] = binary(e)
      return (env) => {
        const ent = asEntity(l(env))
        const tag = asString(r(env))
        const found = entityData(env, ent).tags.get(tag)
        if (found === undefined) throw new CedarError(`\`${ent}\` does not have the tag \`${tag}\``)
        return found
      }
    }
    case 'hasTag': {
      const [l, r] = binary(e)
      return (env) => {
        const ent = asEntity(l(env))
        const tag = asString(r(env))
        return env.entities.get(ent.key)?.tags.has(tag) ?? false
      }
    }
    case '.': {
      const l = compileExpr(e.left)
      const attr: string = e.attr
      return (env) => getAttr(env, l(env), attr)
    }
    case 'has': {
      const l = compileExpr(e.left)
      const path: string[] = Array.isArray(e.attr) ? e.attr : [e.attr]
      if (path.length === 1) {
        const attr = path[0]!
        return (env) => hasAttr(env, l(env), attr)
      }
      // `e has a.b.c` is `e has a && e.a has b && e.a.b has c`.
      return (env) => {
        let v = l(env)
        for (let i = 0; i < path.length; i++) {
          if (!hasAttr(env, v, path[i]!)) return false
          if (i < path.length - 1) v = getAttr(env, v, path[i]!)
        }
        return true
      }
    }
    case 'like': {
      const l = compileExpr(e.left)
      const match = compileLike(e.pattern)
      return (env) => match(asString(l(env)))
    }
    case 'is': {
      const l = compileExpr(e.left)
      const type: string = e.entity_type
      if (e.in === undefined) return (env) => asEntity(l(env)).type === type
      const r = compileExpr(e.in)
      return (env) => {
        const ent = asEntity(l(env))
        return ent.type === type && inValue(env, ent, r(env))
      }
    }
    case 'if-then-else': {
      const c = compileExpr(e.if)
      const t = compileExpr(e.then)
      const f = compileExpr(e.else)
      return (env) => (asBool(c(env)) ? t(env) : f(env))
    }
    case 'Set': {
      const items = (e as Expr[]).map(compileExpr)
      return (env) => new SetValue(items.map((f) => f(env)))
    }
    case 'Record': {
      const fields = Object.entries(e as Record<string, Expr>).map(
        ([k, v]) => [k, compileExpr(v)] as const,
      )
      return (env) => new RecordValue(new Map(fields.map(([k, f]) => [k, f(env)])))
    }
  }
  const ext = extensions[op]
  if (!ext || !Array.isArray(e))
    throw new UnsupportedPolicyError(`extension function \`${op}\` is not supported`)
  const args = (e as Expr[]).map(compileExpr)
  if (args.length !== ext.arity)
    return () => {
      throw new CedarError(`wrong number of arguments to \`${op}\``)
    }
  if (args.length === 1) {
    const a = args[0]!
    // `ip("10.0.0.0/8")`, `decimal("1.5")`: a constant, parsed once (a literal that fails to
    // parse is left to raise its error at evaluation, as the reference does).
    if ((op === 'ip' || op === 'ipaddr' || op === 'decimal') && 'Value' in (e as Expr[])[0]!) {
      try {
        const v = ext.fn([a(CONSTANT_ENV)])
        return () => v
      } catch {}
    }
    return (env) => ext.fn([a(env)])
  }
  return (env) => ext.fn(args.map((f) => f(env)))
}
