/** Entity sets in Cedar's JSON form, turned into lookups with precomputed ancestor closures. */
import type { EntityData, EntityLookup } from './compile.ts'
import {
  type EntityValue,
  entityFromJson,
  JsonValueError,
  RecordValue,
  type Value,
  valueFromJson,
} from './values.ts'

export interface EntityJson {
  uid: unknown
  attrs?: Record<string, unknown>
  parents?: unknown[]
  tags?: Record<string, unknown>
}

interface Parsed {
  uid: EntityValue
  attrs: Map<string, Value>
  parents: EntityValue[]
  tags: Map<string, Value>
}

function convertRecord(obj: Record<string, unknown> | undefined): Map<string, Value> {
  const out = new Map<string, Value>()
  for (const [k, v] of Object.entries(obj ?? {})) out.set(k, valueFromJson(v))
  return out
}

export function parseEntity(json: EntityJson): Parsed {
  if (!json || typeof json !== 'object') throw new JsonValueError('an entity must be an object')
  return {
    uid: entityFromJson(json.uid),
    attrs: convertRecord(json.attrs),
    parents: (json.parents ?? []).map(entityFromJson),
    tags: convertRecord(json.tags),
  }
}

/**
 * Transitive ancestors of every entity. Parents that are not themselves in the set still count
 * as ancestors (Cedar semantics), but contribute no further ancestors.
 */
export function closeHierarchy(parsed: readonly Parsed[]): Map<string, EntityData> {
  const byKey = new Map<string, Parsed>()
  for (const p of parsed) {
    if (byKey.has(p.uid.key)) throw new JsonValueError(`duplicate entity ${p.uid}`)
    byKey.set(p.uid.key, p)
  }
  const closure = new Map<string, Set<string>>()
  const ancestorsOf = (key: string, path: Set<string>): Set<string> => {
    const done = closure.get(key)
    if (done) return done
    const out = new Set<string>()
    const entity = byKey.get(key)
    if (entity && !path.has(key)) {
      path.add(key)
      for (const parent of entity.parents) {
        out.add(parent.key)
        for (const a of ancestorsOf(parent.key, path)) out.add(a)
      }
      path.delete(key)
    }
    closure.set(key, out)
    return out
  }
  const result = new Map<string, EntityData>()
  for (const p of parsed) {
    result.set(p.uid.key, {
      uid: p.uid,
      attrs: p.attrs,
      ancestors: ancestorsOf(p.uid.key, new Set()),
      tags: p.tags,
      memo0: undefined,
      list0: undefined,
      memo1: undefined,
      list1: undefined,
    })
  }
  return result
}

/** A self-contained entity set, e.g. the `--entities` file of `dflare authz eval`. */
export function entitiesFromJson(list: readonly EntityJson[]): EntityLookup {
  if (!Array.isArray(list)) throw new JsonValueError('entities must be a JSON array')
  return closeHierarchy(list.map(parseEntity))
}

export function contextFromJson(json: unknown): RecordValue {
  if (json === undefined) return new RecordValue(new Map())
  const v = valueFromJson(json)
  if (!(v instanceof RecordValue)) throw new JsonValueError('context must be a record')
  return v
}
