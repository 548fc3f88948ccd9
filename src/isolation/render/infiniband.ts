import type { Resources } from '../resources.ts'
import type { TenantSpec } from '../spec.ts'
import type { DesiredObject } from '../types.ts'

export const hexPkey = (p: number) => `0x${p.toString(16).padStart(4, '0')}`

type Member = { guid: string; membership: 'full' | 'limited' }

/**
 * The tenant's two partitions. Compute: the tenant's hosts are full members, shared service
 * ports limited (limited members cannot talk to each other, so two tenants never meet there).
 * Storage: storage servers full, tenant hosts limited, so hosts reach storage but not each other.
 */
export function partitions(spec: TenantSpec, r: Resources) {
  const hosts = [...new Set(spec.hostPorts.flatMap((p) => (p.guid ? [p.guid] : [])))].sort()
  const compute: Member[] = [
    ...hosts.map((guid) => ({ guid, membership: 'full' as const })),
    ...spec.infiniband.servicePorts
      .filter((g) => !hosts.includes(g))
      .map((guid) => ({ guid, membership: 'limited' as const })),
  ]
  const storage: Member[] = [
    ...spec.storage.servicePorts.map((guid) => ({ guid, membership: 'full' as const })),
    ...hosts
      .filter((g) => !spec.storage.servicePorts.includes(g))
      .map((guid) => ({ guid, membership: 'limited' as const })),
  ]
  const id = r.tenant.replace(/-/g, '_')
  return [
    { name: `t_${id}`, pkey: r.pkeys.compute, members: compute },
    { name: `t_${id}_storage`, pkey: r.pkeys.storage, members: storage },
  ]
}

/** OpenSM partitions.conf fragment (include it in the subnet manager's partitions.conf). */
export function renderPartitionsConf(spec: TenantSpec, r: Resources): string {
  const lines = [`# Dflare tenant ${r.tenant} (spec version ${r.specVersion})`]
  for (const p of partitions(spec, r)) {
    const members = p.members.map((m) => `${m.guid}=${m.membership}`).join(', ')
    lines.push(`${p.name}=${hexPkey(p.pkey)}, ipoib, defmember=limited : ${members} ;`)
  }
  return `${lines.join('\n')}\n`
}

export interface UfmCall {
  method: 'POST' | 'DELETE'
  path: string
  body?: Record<string, unknown>
}

/** The NVIDIA UFM REST calls that establish the same partitions (one call per membership). */
export function ufmCalls(spec: TenantSpec, r: Resources): UfmCall[] {
  const calls: UfmCall[] = []
  for (const p of partitions(spec, r))
    for (const membership of ['full', 'limited'] as const) {
      const guids = p.members.filter((m) => m.membership === membership).map((m) => m.guid.slice(2))
      if (guids.length === 0) continue
      calls.push({
        method: 'POST',
        path: '/ufmRest/resources/pkeys',
        body: { pkey: hexPkey(p.pkey), guids, membership, index0: true, ip_over_ib: true },
      })
    }
  return calls
}

export function renderInfiniband(spec: TenantSpec, r: Resources): DesiredObject[] {
  return [
    { driver: 'infiniband', id: 'partitions.conf', content: renderPartitionsConf(spec, r) },
    {
      driver: 'infiniband',
      id: 'ufm.json',
      content: `${JSON.stringify(ufmCalls(spec, r), null, 2)}\n`,
    },
  ]
}
