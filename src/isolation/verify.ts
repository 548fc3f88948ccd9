import type { Db } from '../core/db/index.ts'
import type { Driver } from './drivers/types.ts'
import { renderAll } from './render/index.ts'
import type { Resources } from './resources.ts'
import { addressBits, parseCidr, type TenantSpec } from './spec.ts'
import { type Change, DRIVERS, type DriverName, LAYER_OF, type Layer } from './types.ts'

export type Violation =
  | { kind: 'shared'; layer: Layer; resource: string; tenants: string[] }
  | { kind: 'overlap'; layer: 'ethernet'; resource: string; tenants: string[] }
  | { kind: 'missing-layer'; layer: Layer; tenant: string; detail: string }
  | {
      kind: 'drift'
      layer: Layer
      tenant: string
      object: string
      detail: 'missing' | 'changed' | 'unexpected'
    }

export interface VerifyReport {
  ok: boolean
  tenants: number
  /** Distinct isolation identifiers checked for sharing. */
  identifiers: number
  violations: Violation[]
}

interface TenantRow {
  tenant: string
  spec: TenantSpec
  resources: Resources
}

const DRIFT = {
  create: 'missing',
  change: 'changed',
  remove: 'unexpected',
} as const satisfies Record<Change['action'], string>

/** Every isolation identifier of a tenant, keyed by kind and the scope it must be unique in. */
export function identifiers(spec: TenantSpec, r: Resources): [Layer, string][] {
  const f = r.fabric
  const out: [Layer, string][] = [
    ['ethernet', `vrf ${f}/${r.vrf.id}`],
    ['ethernet', `vrf-name ${f}/${r.vrf.name}`],
    ['ethernet', `vni ${f}/${r.vrf.l3vni}`],
    ['ethernet', `rd ${f}/${r.vrf.rd}`],
    ['ethernet', `rt ${f}/${r.vrf.rt}`],
    ['infiniband', `pkey ${f}/${r.pkeys.compute}`],
    ['infiniband', `pkey ${f}/${r.pkeys.storage}`],
  ]
  for (const n of r.networks)
    out.push(['ethernet', `vlan ${f}/${n.vlan}`], ['ethernet', `vni ${f}/${n.l2vni}`])
  for (const p of spec.hostPorts) {
    out.push(['ethernet', `switch-port ${f}/${p.switch}:${p.port}`])
    if (p.guid) out.push(['infiniband', `guid ${f}/${p.guid}`])
  }
  for (const e of spec.storage.exports) out.push(['storage', `export ${f}/${e.path}`])
  for (const ns of r.namespaces) out.push(['compute', `k8s-namespace ${ns.cluster}/${ns.name}`])
  for (const s of r.slurm) {
    out.push(
      ['compute', `slurm-account ${s.cluster}/${s.account}`],
      ['compute', `slurm-qos ${s.cluster}/${s.qos}`],
      ['compute', `slurm-partition ${s.cluster}/${s.partition}`],
    )
    for (const u of spec.slurm.users) out.push(['compute', `slurm-user ${s.cluster}/${u}`])
    for (const n of spec.slurm.nodes) out.push(['compute', `slurm-node ${s.cluster}/${n}`])
  }
  const fw = r.firewall
  for (const name of [fw.chain, fw.src4, fw.dst4]) out.push(['perimeter', `nft ${f}/${name}`])
  return out
}

/** Overlapping tenant networks in one fabric would make IP-based ACLs ambiguous between tenants. */
function overlaps(rows: TenantRow[]): Violation[] {
  const byFabric = new Map<string, { lo: bigint; hi: bigint; cidr: string; tenant: string }[]>()
  for (const { resources: r } of rows)
    for (const n of r.networks) {
      const p = parseCidr(n.cidr)!
      const lo = addressBits(p.addr, 4)
      const list = byFabric.get(r.fabric) ?? []
      list.push({ lo, hi: lo + (1n << BigInt(32 - p.prefix)) - 1n, cidr: n.cidr, tenant: r.tenant })
      byFabric.set(r.fabric, list)
    }
  const out: Violation[] = []
  for (const [fabric, list] of byFabric) {
    list.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0))
    let reach = list[0]
    for (const cur of list.slice(1)) {
      if (reach && cur.lo <= reach.hi && cur.tenant !== reach.tenant)
        out.push({
          kind: 'overlap',
          layer: 'ethernet',
          resource: `cidr ${fabric}/${reach.cidr} ${cur.cidr}`,
          tenants: [reach.tenant, cur.tenant].sort(),
        })
      if (!reach || cur.hi > reach.hi) reach = cur
    }
  }
  return out
}

function missingLayers(row: TenantRow, realm: boolean | 'error'): Violation[] {
  const { tenant, spec, resources: r } = row
  const out: Violation[] = []
  const miss = (layer: Layer, detail: string) =>
    out.push({ kind: 'missing-layer', layer, tenant, detail })
  if (realm !== true)
    miss('identity', realm === 'error' ? 'realm lookup failed' : 'tenant realm does not exist')
  if (!r.vrf?.id || r.networks.length === 0) miss('ethernet', 'no VRF or no tenant network')
  if (!r.pkeys?.compute) miss('infiniband', 'no partition key')
  if (!r.pkeys?.storage) miss('storage', 'no storage partition key')
  if (r.namespaces.length + r.slurm.length === 0)
    miss('compute', 'no Kubernetes namespace or Slurm account')
  if (!r.firewall?.chain || spec.networks.length === 0) miss('perimeter', 'no perimeter ruleset')
  return out
}

/**
 * The isolation invariant across all tenants: no identifier shared, no overlapping networks,
 * every tenant has all six layers, and what the drivers observe is what was desired (for
 * destroyed tenants: nothing is left behind).
 */
export async function verifyAll(d: {
  db: Db
  drivers: Record<DriverName, Driver>
  realmExists: (tenant: string) => Promise<boolean>
}): Promise<VerifyReport> {
  const res = await d.db.query<TenantRow & { state: string }>(
    `SELECT t.tenant, t.state, s.spec, t.resources FROM isolation.tenants t
     LEFT JOIN isolation.specs s ON s.tenant = t.tenant AND s.version = t.desired_version
     ORDER BY t.tenant`,
  )
  const active = res.rows.filter((r) => r.state === 'active' && r.resources && r.spec)
  const violations: Violation[] = []

  const owners = new Map<string, { layer: Layer; tenants: Set<string> }>()
  for (const row of active)
    for (const [layer, key] of identifiers(row.spec, row.resources)) {
      const o = owners.get(key) ?? { layer, tenants: new Set() }
      o.tenants.add(row.tenant)
      owners.set(key, o)
    }
  for (const [key, o] of owners)
    if (o.tenants.size > 1)
      violations.push({
        kind: 'shared',
        layer: o.layer,
        resource: key,
        tenants: [...o.tenants].sort(),
      })
  violations.push(...overlaps(active))

  for (const row of active) {
    const realm = await d.realmExists(row.tenant).then(
      (v) => v === true,
      () => 'error' as const,
    )
    violations.push(...missingLayers(row, realm))
  }

  // Drift, per tenant, layer and object; a tenant row without desired state must have no artifacts.
  for (const row of res.rows) {
    const desired =
      row.state === 'active' && row.spec && row.resources ? renderAll(row.spec, row.resources) : []
    for (const name of DRIVERS) {
      const driver = d.drivers[name]
      const mine = desired.filter((o) => o.driver === name)
      for (const c of driver.plan(mine, await driver.observe(row.tenant, mine)))
        violations.push({
          kind: 'drift',
          layer: LAYER_OF[name],
          tenant: row.tenant,
          object: `${name}:${c.object}`,
          detail: DRIFT[c.action],
        })
    }
  }
  return {
    ok: violations.length === 0,
    tenants: active.length,
    identifiers: owners.size,
    violations,
  }
}
