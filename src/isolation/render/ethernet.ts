import YAML from 'yaml'
import type { Resources } from '../resources.ts'
import type { TenantSpec } from '../spec.ts'
import type { DesiredObject } from '../types.ts'

/** Leaf switches that carry the tenant: every switch with a tenant host port. */
function leaves(spec: TenantSpec) {
  return [...new Set(spec.hostPorts.map((p) => p.switch))].sort()
}

function portsOn(spec: TenantSpec, r: Resources, leaf: string) {
  const vlanOf = new Map(r.networks.map((n) => [n.name, n.vlan]))
  return spec.hostPorts
    .filter((p) => p.switch === leaf)
    .map((p) => ({ port: p.port, host: p.host, vlan: vlanOf.get(p.network)! }))
}

/** NVIDIA Cumulus Linux NVUE, as a `nv config patch` document. */
export function renderNvue(spec: TenantSpec, r: Resources, leaf: string): string {
  const vlans: Record<string, unknown> = {}
  const interfaces: Record<string, unknown> = {}
  for (const n of r.networks) {
    vlans[String(n.vlan)] = { vni: { [String(n.l2vni)]: {} } }
    interfaces[`vlan${n.vlan}`] = {
      type: 'svi',
      vlan: n.vlan,
      ip: { vrf: r.vrf.name, address: { [n.gateway]: {} } },
    }
  }
  for (const p of portsOn(spec, r, leaf))
    interfaces[p.port] = {
      type: 'swp',
      description: `dflare ${r.tenant} ${p.host}`,
      bridge: { domain: { br_default: { access: p.vlan } } },
    }
  const doc = [
    {
      set: {
        bridge: { domain: { br_default: { vlan: vlans } } },
        interface: interfaces,
        vrf: {
          [r.vrf.name]: {
            evpn: { enable: 'on', vni: { [String(r.vrf.l3vni)]: {} } },
            router: {
              bgp: {
                enable: 'on',
                rd: r.vrf.rd,
                'route-import': { 'from-evpn': { 'route-target': { [r.vrf.rt]: {} } } },
                'route-export': { 'to-evpn': { 'route-target': { [r.vrf.rt]: {} } } },
              },
            },
          },
        },
        nve: { vxlan: { enable: 'on' } },
        evpn: { enable: 'on' },
      },
    },
  ]
  return `# Dflare tenant ${r.tenant}, leaf ${leaf} (spec version ${r.specVersion}); apply with: nv config patch FILE\n${YAML.stringify(doc)}`
}

/** SONiC config_db.json fragment (load with `config load FILE` or merge into config_db.json). */
export function renderSonic(spec: TenantSpec, r: Resources, leaf: string): string {
  const db: Record<string, Record<string, Record<string, string>>> = {
    VRF: { [r.vrf.name]: { vni: String(r.vrf.l3vni) } },
    VLAN: {},
    VLAN_MEMBER: {},
    VLAN_INTERFACE: {},
    VXLAN_TUNNEL_MAP: {},
    BGP_GLOBALS: { [r.vrf.name]: { local_asn: String(r.asn) } },
    BGP_GLOBALS_AF: {
      [`${r.vrf.name}|l2vpn_evpn`]: {
        'advertise-ipv4-unicast': 'true',
        route_distinguisher: r.vrf.rd,
      },
    },
    BGP_GLOBALS_EVPN_RT: {
      [`${r.vrf.name}|L2VPN_EVPN|${r.vrf.rt}`]: { 'route-target-type': 'both' },
    },
  }
  for (const n of r.networks) {
    const vlan = `Vlan${n.vlan}`
    db.VLAN![vlan] = { vlanid: String(n.vlan) }
    db.VLAN_INTERFACE![vlan] = { vrf_name: r.vrf.name }
    db.VLAN_INTERFACE![`${vlan}|${n.gateway}`] = {}
    db.VXLAN_TUNNEL_MAP![`vtep|map_${n.l2vni}_${vlan}`] = { vlan, vni: String(n.l2vni) }
  }
  for (const p of portsOn(spec, r, leaf))
    db.VLAN_MEMBER![`Vlan${p.vlan}|${p.port}`] = { tagging_mode: 'untagged' }
  return `${JSON.stringify(db, null, 2)}\n`
}

/** Arista EOS CLI configuration snippet. */
export function renderEos(spec: TenantSpec, r: Resources, leaf: string): string {
  const l: string[] = [`! Dflare tenant ${r.tenant}, leaf ${leaf} (spec version ${r.specVersion})`]
  l.push(`vrf instance ${r.vrf.name}`, `ip routing vrf ${r.vrf.name}`)
  for (const n of r.networks) l.push(`vlan ${n.vlan}`, `   name t-${r.tenant}-${n.name}`)
  for (const p of portsOn(spec, r, leaf))
    l.push(
      `interface ${p.port}`,
      `   description dflare ${r.tenant} ${p.host}`,
      '   switchport mode access',
      `   switchport access vlan ${p.vlan}`,
    )
  for (const n of r.networks)
    l.push(`interface Vlan${n.vlan}`, `   vrf ${r.vrf.name}`, `   ip address virtual ${n.gateway}`)
  l.push('interface Vxlan1')
  for (const n of r.networks) l.push(`   vxlan vlan ${n.vlan} vni ${n.l2vni}`)
  l.push(`   vxlan vrf ${r.vrf.name} vni ${r.vrf.l3vni}`)
  l.push(`router bgp ${r.asn}`)
  for (const n of r.networks)
    l.push(
      `   vlan ${n.vlan}`,
      `      rd auto`,
      `      route-target both ${r.asn}:${n.l2vni}`,
      '      redistribute learned',
    )
  l.push(
    `   vrf ${r.vrf.name}`,
    `      rd ${r.vrf.rd}`,
    `      route-target import evpn ${r.vrf.rt}`,
    `      route-target export evpn ${r.vrf.rt}`,
    '      redistribute connected',
  )
  return `${l.join('\n')}\n`
}

/** Fabric-wide summary (for border leaves and reviewers) plus one file per leaf and NOS. */
export function renderEthernet(spec: TenantSpec, r: Resources): DesiredObject[] {
  // Fields listed one by one: resources read back from jsonb come with their keys reordered.
  const { vrf } = r
  const summary = {
    tenant: r.tenant,
    fabric: r.fabric,
    vrf: { name: vrf.name, id: vrf.id, l3vni: vrf.l3vni, rd: vrf.rd, rt: vrf.rt },
    networks: r.networks.map((n) => ({
      name: n.name,
      cidr: n.cidr,
      gateway: n.gateway,
      vlan: n.vlan,
      l2vni: n.l2vni,
    })),
    leaves: leaves(spec),
  }
  const out: DesiredObject[] = [
    { driver: 'ethernet', id: 'fabric.json', content: `${JSON.stringify(summary, null, 2)}\n` },
  ]
  for (const leaf of leaves(spec)) {
    out.push({ driver: 'ethernet', id: `nvue/${leaf}.yaml`, content: renderNvue(spec, r, leaf) })
    out.push({ driver: 'ethernet', id: `sonic/${leaf}.json`, content: renderSonic(spec, r, leaf) })
    out.push({ driver: 'ethernet', id: `eos/${leaf}.cfg`, content: renderEos(spec, r, leaf) })
  }
  return out
}
