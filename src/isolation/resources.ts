import type { Transaction } from '../core/db/index.ts'
import type { Allocator, ClaimKind } from './allocator.ts'
import type { PoolName } from './pools.ts'
import { addressBits, type NamespaceSpec, parseCidr, type TenantSpec } from './spec.ts'

/** Everything allocated or derived for one tenant: the input of every renderer. */
export interface Resources {
  tenant: string
  fabric: string
  specVersion: number
  asn: number
  vrf: { id: number; name: string; l3vni: number; rd: string; rt: string }
  networks: { name: string; cidr: string; gateway: string; vlan: number; l2vni: number }[]
  pkeys: { compute: number; storage: number }
  namespaces: { cluster: string; name: string; spec: NamespaceSpec }[]
  slurm: { cluster: string; account: string; qos: string; partition: string }[]
  firewall: { table: string; chain: string; src4: string; src6: string; dst4: string }
}

/** Identifier of the tenant in names that only allow [a-z0-9_] (tenant names never contain `_`). */
export const ident = (tenant: string) => tenant.replace(/-/g, '_')

export const namespaceName = (tenant: string, ns: string) => `t-${tenant}-${ns}`

export const PERIMETER_TABLE = 'dflare_perimeter'

function firstHost(cidr: string): string {
  const p = parseCidr(cidr)!
  const n = addressBits(p.addr, 4) + 1n
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.') + `/${p.prefix}`
}

/**
 * Allocates (or keeps) every number and name the spec needs, inside the caller's transaction,
 * and quarantines whatever the tenant held but no longer needs.
 */
export async function allocate(
  tx: Transaction,
  alloc: Allocator,
  spec: TenantSpec,
  specVersion: number,
  asn: number,
  now: Date,
): Promise<Resources> {
  const { tenant, fabric } = spec
  const numbers = new Set<string>()
  const claims: { kind: ClaimKind; scope: string; name: string }[] = []
  await alloc.lockFabric(tx, fabric, now)
  const num = async (pool: PoolName, purpose: string) => {
    numbers.add(`${fabric}/${pool}/${purpose}`)
    return alloc.number(tx, { fabric, pool, tenant, purpose, now })
  }
  // Names are claimed together at the end, in one statement.
  const claim = (kind: ClaimKind, scope: string, name: string) => {
    claims.push({ kind, scope, name })
  }

  const vrfId = await num('vrf', 'vrf')
  const l3vni = await num('vni', 'l3')
  const networks: Resources['networks'] = []
  for (const n of spec.networks) {
    await alloc.assertNoOverlap(tx, { fabric, cidr: n.cidr, tenant, now })
    claim('cidr', fabric, n.cidr)
    networks.push({
      name: n.name,
      cidr: n.cidr,
      gateway: firstHost(n.cidr),
      vlan: await num('vlan', `net:${n.name}`),
      l2vni: await num('vni', `l2:${n.name}`),
    })
  }
  const pkeys = { compute: await num('pkey', 'compute'), storage: await num('pkey', 'storage') }
  for (const p of spec.hostPorts) {
    claim('switch-port', fabric, `${p.switch}:${p.port}`)
    if (p.guid) claim('ib-guid', fabric, p.guid)
  }
  for (const e of spec.storage.exports) claim('storage-export', fabric, e.path)

  const namespaces: Resources['namespaces'] = []
  for (const cluster of spec.kubernetes.clusters)
    for (const ns of spec.kubernetes.namespaces) {
      const name = namespaceName(tenant, ns.name)
      claim('k8s-namespace', cluster, name)
      namespaces.push({ cluster, name, spec: ns })
    }
  const slurm: Resources['slurm'] = []
  for (const cluster of spec.slurm.clusters) {
    const names = { account: tenant, qos: tenant, partition: tenant }
    claim('slurm-account', cluster, names.account)
    claim('slurm-qos', cluster, names.qos)
    claim('slurm-partition', cluster, names.partition)
    for (const u of spec.slurm.users) claim('slurm-user', cluster, u)
    for (const n of spec.slurm.nodes) claim('slurm-node', cluster, n)
    slurm.push({ cluster, ...names })
  }
  const id = ident(tenant)
  const firewall = {
    table: PERIMETER_TABLE,
    chain: `t_${id}`,
    src4: `t_${id}_src4`,
    src6: `t_${id}_src6`,
    dst4: `t_${id}_dst4`,
  }
  for (const set of [firewall.chain, firewall.src4, firewall.src6, firewall.dst4])
    claim('nft-set', fabric, set)

  await alloc.claimAll(tx, tenant, claims, now)
  const keep = new Set(claims.map((c) => `${c.kind}/${c.scope}/${c.name}`))
  await alloc.releaseExcept(tx, tenant, { numbers, claims: keep }, now)
  return {
    tenant,
    fabric,
    specVersion,
    asn,
    vrf: {
      id: vrfId,
      name: `Vrf${vrfId}`,
      l3vni,
      rd: `${asn}:${vrfId}`,
      rt: `${asn}:${vrfId}`,
    },
    networks,
    pkeys,
    namespaces,
    slurm,
    firewall,
  }
}
