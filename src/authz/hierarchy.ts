/**
 * An in-memory entity hierarchy that is itself the evaluator's EntityLookup: each entity's
 * transitive ancestors are computed once and kept until the hierarchy changes. A decision on
 * cached entities therefore builds nothing per request.
 *
 * `complete` tells whether every ancestor of an entity is loaded (or known absent), i.e. whether
 * its closure is exact; the PDP only evaluates against complete entries.
 */
import type { EntityData, EntityLookup } from './cedar/compile.ts'
import type { EntityValue, Value } from './cedar/values.ts'

export interface StoredEntity {
  uid: EntityValue
  tenant: string
  attrs: ReadonlyMap<string, Value>
  parents: readonly EntityValue[]
  tags: ReadonlyMap<string, Value>
}

export interface HierarchyEntry extends EntityData {
  readonly complete: boolean
}

const MAX_DEPTH = 64

export class Hierarchy implements EntityLookup {
  /** `null` records a known-absent entity. */
  readonly #stored = new Map<string, StoredEntity | null>()
  readonly #computed = new Map<string, HierarchyEntry>()
  readonly #derive: (key: string) => StoredEntity | undefined

  /** `derive` synthesises entities that are not stored (RoleBinding groups). */
  constructor(derive: (key: string) => StoredEntity | undefined = () => undefined) {
    this.#derive = derive
  }

  get size() {
    return this.#stored.size
  }

  has(key: string) {
    return this.#stored.has(key)
  }

  set(key: string, entity: StoredEntity | null) {
    this.#stored.set(key, entity)
    this.#computed.clear()
  }

  delete(key: string) {
    if (this.#stored.delete(key)) this.#computed.clear()
  }

  clear() {
    this.#stored.clear()
    this.#computed.clear()
  }

  stored(key: string): StoredEntity | null | undefined {
    const s = this.#stored.get(key)
    return s === undefined ? this.#derive(key) : s
  }

  get(key: string): HierarchyEntry | undefined {
    return this.#computed.get(key) ?? this.#compute(key, 0)
  }

  #compute(key: string, depth: number): HierarchyEntry | undefined {
    const s = this.stored(key)
    if (!s) return undefined
    if (depth > MAX_DEPTH) throw new RangeError('entity hierarchy too deep')
    // Registered before its parents are walked: a cycle then ends on this empty, incomplete
    // entry instead of recursing.
    const ancestors = new Set<string>()
    const entry: HierarchyEntry & { complete: boolean } = {
      uid: s.uid,
      attrs: s.attrs,
      tags: s.tags,
      ancestors,
      memo0: undefined,
      list0: undefined,
      memo1: undefined,
      list1: undefined,
      complete: false,
    }
    this.#computed.set(key, entry)
    let complete = true
    for (const p of s.parents) {
      ancestors.add(p.key)
      const known = this.#stored.has(p.key) || this.#derive(p.key) !== undefined
      if (!known) {
        complete = false
        continue
      }
      const parent = this.#computed.get(p.key) ?? this.#compute(p.key, depth + 1)
      if (!parent) continue // known absent: counts as an ancestor, contributes nothing further
      for (const a of parent.ancestors) ancestors.add(a)
      if (!parent.complete) complete = false
    }
    entry.complete = complete
    return entry
  }

  /** Keys of entities reachable from `roots` that are neither loaded nor derivable. */
  missing(roots: readonly EntityValue[]): EntityValue[] {
    const out: EntityValue[] = []
    const seen = new Set<string>()
    const stack = [...roots]
    while (stack.length > 0) {
      const e = stack.pop()!
      if (seen.has(e.key)) continue
      seen.add(e.key)
      const s = this.stored(e.key)
      if (s === undefined) out.push(e)
      else if (s) for (const p of s.parents) stack.push(p)
    }
    return out
  }
}
