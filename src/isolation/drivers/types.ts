import { type Change, type DesiredObject, type DriverName, LAYER_OF, sha256 } from '../types.ts'

/**
 * One layer's driver. `observe` reports what is really there (object id -> content hash, where
 * an object that differs from the desired one hashes differently); plan/apply/delete act on
 * the artifacts the renderers produced. Drivers are idempotent: applying twice is harmless.
 */
export interface Driver {
  readonly name: DriverName
  observe(tenant: string, desired: readonly DesiredObject[]): Promise<Map<string, string>>
  plan(desired: readonly DesiredObject[], observed: ReadonlyMap<string, string>): Change[]
  apply(tenant: string, object: DesiredObject): Promise<void>
  delete(tenant: string, id: string): Promise<void>
}

/** Desired versus observed: create what is missing, change what differs, remove the rest. */
export function diff(
  driver: DriverName,
  desired: readonly DesiredObject[],
  observed: ReadonlyMap<string, string>,
): Change[] {
  const layer = LAYER_OF[driver]
  const changes: Change[] = []
  const wanted = new Set<string>()
  for (const o of desired) {
    wanted.add(o.id)
    const hash = sha256(o.content)
    const seen = observed.get(o.id)
    if (seen === undefined) changes.push({ driver, layer, object: o.id, action: 'create', hash })
    else if (seen !== hash) changes.push({ driver, layer, object: o.id, action: 'change', hash })
  }
  for (const id of [...observed.keys()].sort())
    if (!wanted.has(id)) changes.push({ driver, layer, object: id, action: 'remove' })
  return changes
}
