/**
 * Cedar runtime values. Representations are chosen so that the common operations are plain
 * JavaScript operations: booleans and strings are themselves, a Long is a safe-integer `number`
 * (or a `bigint` outside ±2^53, always normalised so one value has exactly one representation),
 * and entities, sets, records and extension values are small classes.
 */
import { CedarError } from './errors.ts'
import { Decimal, IpAddr } from './extensions.ts'

export { CedarError }

export class EntityValue {
  readonly type: string
  readonly id: string
  /** Injective key (`type` never contains NUL): used for maps and equality. */
  readonly key: string
  constructor(type: string, id: string) {
    this.type = type
    this.id = id
    this.key = entityKey(type, id)
  }
  toString() {
    return `${this.type}::${JSON.stringify(this.id)}`
  }
}

export function entityKey(type: string, id: string) {
  return `${type}\u0000${id}`
}

export class SetValue {
  readonly items: readonly Value[]
  constructor(items: readonly Value[]) {
    this.items = items
  }
  has(v: Value): boolean {
    for (const item of this.items) if (valueEquals(item, v)) return true
    return false
  }
}

export class RecordValue {
  readonly attrs: ReadonlyMap<string, Value>
  constructor(attrs: ReadonlyMap<string, Value>) {
    this.attrs = attrs
  }
}

/**
 * One record and one set that live as long as the process: see KEEP_REQUEST_LOOKUP in
 * policyset.ts (a class whose every instance dies between two full GCs loses its hidden classes,
 * and the evaluator's optimized code with them).
 */
export const KEPT_VALUES = [new RecordValue(new Map()), new SetValue([])] as const

export type Long = number | bigint
export type Value =
  | boolean
  | Long
  | string
  | EntityValue
  | SetValue
  | RecordValue
  | IpAddr
  | Decimal

const I64_MIN = -(2n ** 63n)
const I64_MAX = 2n ** 63n - 1n

/** Canonical form of a Long: a number when it is a safe integer, else a bigint. */
export function normalizeLong(n: bigint, op: string): Long {
  if (n < I64_MIN || n > I64_MAX) throw new CedarError(`integer overflow while attempting to ${op}`)
  return n >= -9007199254740991n && n <= 9007199254740991n ? Number(n) : n
}

export function isLong(v: Value): v is Long {
  return typeof v === 'number' || typeof v === 'bigint'
}

export function typeName(v: Value): string {
  switch (typeof v) {
    case 'boolean':
      return 'bool'
    case 'number':
    case 'bigint':
      return 'long'
    case 'string':
      return 'string'
  }
  if (v instanceof EntityValue) return 'entity'
  if (v instanceof SetValue) return 'set'
  if (v instanceof RecordValue) return 'record'
  if (v instanceof IpAddr) return 'ipaddr'
  return 'decimal'
}

export function typeError(expected: string, got: Value): CedarError {
  return new CedarError(`type error: expected ${expected}, got ${typeName(got)}`)
}

export function valueEquals(a: Value, b: Value): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object') return false
  if (a instanceof EntityValue) return b instanceof EntityValue && a.key === b.key
  if (a instanceof SetValue) {
    if (!(b instanceof SetValue)) return false
    for (const x of a.items) if (!b.has(x)) return false
    for (const y of b.items) if (!a.has(y)) return false
    return true
  }
  if (a instanceof RecordValue) {
    if (!(b instanceof RecordValue) || a.attrs.size !== b.attrs.size) return false
    for (const [k, v] of a.attrs) {
      const w = b.attrs.get(k)
      if (w === undefined || !valueEquals(v, w)) return false
    }
    return true
  }
  if (a instanceof IpAddr) return b instanceof IpAddr && a.equals(b)
  return b instanceof Decimal && a.value === b.value
}

export class JsonValueError extends Error {
  override name = 'JsonValueError'
}

/** Parsed extension values are immutable: a bounded memo spares re-parsing per request. */
const MEMO_MAX = 10_000
const ipMemo = new Map<string, Value>()
const decimalMemo = new Map<string, Value>()
function memoized(memo: Map<string, Value>, s: string, make: (s: string) => Value): Value {
  let v = memo.get(s)
  if (v === undefined) {
    v = make(s) // throws on invalid input: errors are never memoised
    if (memo.size >= MEMO_MAX) memo.clear()
    memo.set(s, v)
  }
  return v
}

/** Extension constructors usable in JSON (`__extn`) and in policies. */
const constructors: Record<string, (s: string) => Value> = {
  ip: (s) => memoized(ipMemo, s, IpAddr.parse),
  ipaddr: (s) => memoized(ipMemo, s, IpAddr.parse),
  decimal: (s) => memoized(decimalMemo, s, Decimal.parse),
}

/** Converts Cedar's JSON value form (entity/extension escapes) into a runtime value. */
export function valueFromJson(json: unknown): Value {
  switch (typeof json) {
    case 'boolean':
    case 'string':
      return json
    case 'number':
      if (Number.isSafeInteger(json)) return json
      // Integral doubles beyond 2^53 (e.g. 2^62) are exact: keep them as bigints.
      if (!Number.isInteger(json)) throw new JsonValueError(`number ${json} is not an integer`)
      try {
        return normalizeLong(BigInt(json), 'parse an integer')
      } catch {
        throw new JsonValueError(`number ${json} is outside the 64-bit integer range`)
      }
    case 'bigint':
      return normalizeLong(json, 'parse an integer')
  }
  if (Array.isArray(json)) return new SetValue(json.map(valueFromJson))
  if (json === null || typeof json !== 'object') throw new JsonValueError('unsupported JSON value')
  const obj = json as Record<string, unknown>
  const keys = Object.keys(obj)
  if (keys.length === 1 && keys[0] === '__entity') return entityFromJson(obj.__entity)
  if (keys.length === 1 && keys[0] === '__extn') {
    const ext = obj.__extn as { fn?: unknown; arg?: unknown }
    const make = typeof ext?.fn === 'string' ? constructors[ext.fn] : undefined
    if (!make || typeof ext.arg !== 'string')
      throw new JsonValueError(`unsupported extension value ${JSON.stringify(ext?.fn)}`)
    try {
      return make(ext.arg)
    } catch (err) {
      throw new JsonValueError(err instanceof CedarError ? err.message : String(err))
    }
  }
  const attrs = new Map<string, Value>()
  for (const k of keys) attrs.set(k, valueFromJson(obj[k]))
  return new RecordValue(attrs)
}

/** `{type, id}` or `{__entity: {type, id}}`. */
export function entityFromJson(json: unknown): EntityValue {
  let o = json as { type?: unknown; id?: unknown; __entity?: unknown } | null
  if (o && typeof o === 'object' && '__entity' in o) o = o.__entity as typeof o
  if (!o || typeof o.type !== 'string' || typeof o.id !== 'string')
    throw new JsonValueError('an entity reference needs string `type` and `id`')
  return new EntityValue(o.type, o.id)
}

/** Runtime value back to Cedar JSON (for explanations and logs). */
export function valueToJson(v: Value): unknown {
  if (typeof v === 'bigint') return v.toString()
  if (typeof v !== 'object') return v
  if (v instanceof EntityValue) return { __entity: { type: v.type, id: v.id } }
  if (v instanceof SetValue) return v.items.map(valueToJson)
  if (v instanceof RecordValue)
    return Object.fromEntries([...v.attrs].map(([k, x]) => [k, valueToJson(x)]))
  if (v instanceof IpAddr) return { __extn: { fn: 'ip', arg: v.toString() } }
  return { __extn: { fn: 'decimal', arg: v.toString() } }
}
