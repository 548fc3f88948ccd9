import { isIP } from 'node:net'
import YAML from 'yaml'
import { type FieldError, problems } from '../core/errors.ts'

/**
 * The tenant spec: what an operator declares once per tenant. Everything else (VLANs, VNIs,
 * PKeys, names, rendered artifacts) is derived from it plus the allocators.
 */
export interface TenantSpec {
  apiVersion: 'dflare.dev/v1'
  kind: 'TenantIsolation'
  tenant: string
  /** Fabric/site whose pools the tenant's numbers come from. */
  fabric: string
  networks: NetworkSpec[]
  hostPorts: HostPortSpec[]
  gpuQuota: number
  infiniband: { servicePorts: string[] }
  storage: { servicePorts: string[]; exports: ExportSpec[] }
  kubernetes: { clusters: string[]; namespaces: NamespaceSpec[]; groups: GroupBinding[] }
  slurm: { clusters: string[]; nodes: string[]; users: string[]; gpus: number }
  ingress: IngressRule[]
}

export interface NetworkSpec {
  name: string
  /** Tenant subnet; its first host address is the anycast gateway on every leaf. */
  cidr: string
}

export interface HostPortSpec {
  host: string
  network: string
  /** Leaf switch and its port name as the NOS spells it (swp1, Ethernet0, Ethernet1/1). */
  switch: string
  port: string
  /** InfiniBand port GUID of the host's HCA, 0x + 16 hex digits; optional for Ethernet-only hosts. */
  guid?: string
}

export interface ExportSpec {
  name: string
  /** NFS path (`/exports/...`) or object bucket (`s3://bucket`). */
  path: string
  access: 'rw' | 'ro'
  networks: string[]
  hosts: string[]
  identities: string[]
}

export interface NamespaceSpec {
  name: string
  gpus: number
  cpu: string
  memory: string
}

export interface GroupBinding {
  group: string
  role: 'admin' | 'edit' | 'view'
}

export interface IngressRule {
  cidr: string
  protocol: 'tcp' | 'udp' | 'icmp'
  /** Single ports or inclusive ranges; empty for icmp. */
  ports: PortRange[]
}

export type PortRange = { from: number; to: number }

export const TENANT_NAME = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/
const NAME = /^[a-z][a-z0-9-]{0,30}$/
const HOST = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
const PORT_NAME = /^[A-Za-z][A-Za-z0-9/._:-]{0,31}$/
const GUID = /^0x[0-9a-fA-F]{16}$/
const CLUSTER = /^[a-z0-9][a-z0-9._-]{0,62}$/
const GROUP = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$/
const EXPORT_PATH = /^(\/[A-Za-z0-9._-]+)+$|^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/

/** Accumulates field errors so the operator sees every mistake at once. */
class Checker {
  readonly errors: FieldError[] = []
  fail(field: string, message: string) {
    this.errors.push({ field, message })
  }
  object(v: unknown, field: string): Record<string, unknown> | undefined {
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>
    this.fail(field, 'must be an object')
    return undefined
  }
  keys(o: Record<string, unknown>, field: string, allowed: readonly string[]) {
    for (const k of Object.keys(o))
      if (!allowed.includes(k)) this.fail(field ? `${field}.${k}` : k, 'is not a known field')
  }
  string(v: unknown, field: string, re: RegExp, what: string): string {
    if (typeof v !== 'string' || !re.test(v)) {
      this.fail(field, `must be ${what}`)
      return ''
    }
    return v
  }
  int(v: unknown, field: string, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      this.fail(field, `must be an integer ${min}..${max}`)
      return 0
    }
    return v
  }
  array(v: unknown, field: string, max: number): unknown[] {
    if (v === undefined) return []
    if (!Array.isArray(v)) {
      this.fail(field, 'must be a list')
      return []
    }
    if (v.length > max) this.fail(field, `must have at most ${max} items`)
    return v.slice(0, max)
  }
  strings(v: unknown, field: string, re: RegExp, what: string, max = 256): string[] {
    return this.array(v, field, max).map((x, i) => this.string(x, `${field}[${i}]`, re, what))
  }
  unique(values: string[], field: string, what: string) {
    const seen = new Set<string>()
    values.forEach((v, i) => {
      if (v && seen.has(v)) this.fail(`${field}[${i}]`, `duplicate ${what} "${v}"`)
      seen.add(v)
    })
  }
}

/** Parses a CIDR; the address must be the network address (no host bits set). */
export function parseCidr(text: string): { family: 4 | 6; addr: string; prefix: number } | null {
  const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(text)
  if (!m) return null
  const family = isIP(m[1]!)
  if (family !== 4 && family !== 6) return null
  const prefix = Number(m[2])
  if (prefix > (family === 4 ? 32 : 128)) return null
  const bits = addressBits(m[1]!, family)
  const hostBits = (family === 4 ? 32 : 128) - prefix
  if (hostBits > 0 && bits & ((1n << BigInt(hostBits)) - 1n)) return null
  return { family, addr: m[1]!.toLowerCase(), prefix }
}

export function addressBits(addr: string, family: 4 | 6): bigint {
  if (family === 4) return addr.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n)
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined]
  const h = head ? head.split(':') : []
  const t = tail ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g || '0', 16)), 0n)
}

function portRanges(c: Checker, v: unknown, field: string): PortRange[] {
  return c.array(v, field, 64).map((p, i) => {
    const f = `${field}[${i}]`
    if (typeof p === 'number') {
      const n = c.int(p, f, 1, 65535)
      return { from: n, to: n }
    }
    const m = typeof p === 'string' ? /^(\d{1,5})-(\d{1,5})$/.exec(p) : null
    const from = m ? Number(m[1]) : 0
    const to = m ? Number(m[2]) : 0
    if (!m || from < 1 || to > 65535 || from > to) {
      c.fail(f, 'must be a port 1..65535 or a range "FROM-TO"')
      return { from: 1, to: 1 }
    }
    return { from, to }
  })
}

const TOP = [
  'apiVersion',
  'kind',
  'tenant',
  'fabric',
  'networks',
  'hostPorts',
  'gpuQuota',
  'infiniband',
  'storage',
  'kubernetes',
  'slurm',
  'ingress',
] as const

/**
 * Validates a parsed document as a TenantSpec for `tenant`; throws a 400 Problem listing every
 * invalid field. Unknown fields are errors: a typo must never silently drop an isolation control.
 */
export function validateSpec(raw: unknown, tenant: string): TenantSpec {
  const c = new Checker()
  const o = c.object(raw, '(document)') ?? {}
  c.keys(o, '', TOP)
  if (o.apiVersion !== 'dflare.dev/v1') c.fail('apiVersion', 'must be "dflare.dev/v1"')
  if (o.kind !== 'TenantIsolation') c.fail('kind', 'must be "TenantIsolation"')
  if (!TENANT_NAME.test(tenant)) c.fail('tenant', 'tenant name must match ' + TENANT_NAME)
  if (o.tenant !== undefined && o.tenant !== tenant)
    c.fail('tenant', `must equal the tenant being configured ("${tenant}")`)
  const fabric =
    o.fabric === undefined ? 'default' : c.string(o.fabric, 'fabric', CLUSTER, 'a fabric name')

  const networks = c.array(o.networks, 'networks', 64).map((n, i) => {
    const f = `networks[${i}]`
    const no = c.object(n, f) ?? {}
    c.keys(no, f, ['name', 'cidr'])
    const name = c.string(no.name, `${f}.name`, NAME, 'a lowercase name (a-z, 0-9, -)')
    const cidr = c.string(no.cidr, `${f}.cidr`, /./, 'a CIDR')
    const parsed = cidr ? parseCidr(cidr) : null
    if (cidr && (parsed?.family !== 4 || parsed.prefix > 30))
      c.fail(`${f}.cidr`, 'must be an IPv4 network address with a prefix of /30 or shorter')
    return { name, cidr }
  })
  if (networks.length === 0) c.fail('networks', 'must list at least one network')
  c.unique(
    networks.map((n) => n.name),
    'networks',
    'network',
  )
  const netNames = new Set(networks.map((n) => n.name))
  const spans = networks.flatMap((n, i) => {
    const p = n.cidr ? parseCidr(n.cidr) : null
    if (p?.family !== 4) return []
    const lo = addressBits(p.addr, 4)
    return [{ i, lo, hi: lo + (1n << BigInt(32 - p.prefix)) - 1n }]
  })
  for (const a of spans)
    for (const b of spans)
      if (a.i < b.i && a.lo <= b.hi && b.lo <= a.hi)
        c.fail(`networks[${b.i}].cidr`, `overlaps networks[${a.i}].cidr`)

  const hostPorts = c.array(o.hostPorts, 'hostPorts', 4096).map((h, i) => {
    const f = `hostPorts[${i}]`
    const ho = c.object(h, f) ?? {}
    c.keys(ho, f, ['host', 'network', 'switch', 'port', 'guid'])
    const port: HostPortSpec = {
      host: c.string(ho.host, `${f}.host`, HOST, 'a host name'),
      network: c.string(ho.network, `${f}.network`, NAME, 'a network name'),
      switch: c.string(ho.switch, `${f}.switch`, HOST, 'a switch name'),
      port: c.string(ho.port, `${f}.port`, PORT_NAME, 'a switch port name (e.g. swp1)'),
    }
    if (port.network && !netNames.has(port.network))
      c.fail(`${f}.network`, `names no network of this spec ("${port.network}")`)
    if (ho.guid !== undefined)
      port.guid = c
        .string(ho.guid, `${f}.guid`, GUID, 'a port GUID 0x + 16 hex digits')
        .toLowerCase()
    return port
  })
  c.unique(
    hostPorts.map((p) => `${p.switch}:${p.port}`),
    'hostPorts',
    'switch port',
  )
  c.unique(
    hostPorts.flatMap((p) => (p.guid ? [p.guid] : [])),
    'hostPorts',
    'GUID',
  )

  const gpuQuota = o.gpuQuota === undefined ? 0 : c.int(o.gpuQuota, 'gpuQuota', 0, 1_000_000)

  const ibo = o.infiniband === undefined ? {} : (c.object(o.infiniband, 'infiniband') ?? {})
  c.keys(ibo, 'infiniband', ['servicePorts'])
  const ibService = c
    .strings(ibo.servicePorts, 'infiniband.servicePorts', GUID, 'a port GUID')
    .map((g) => g.toLowerCase())

  const so = o.storage === undefined ? {} : (c.object(o.storage, 'storage') ?? {})
  c.keys(so, 'storage', ['servicePorts', 'exports'])
  const storageService = c
    .strings(so.servicePorts, 'storage.servicePorts', GUID, 'a port GUID')
    .map((g) => g.toLowerCase())
  const hostNames = new Set(hostPorts.map((h) => h.host))
  const exports = c.array(so.exports, 'storage.exports', 256).map((e, i) => {
    const f = `storage.exports[${i}]`
    const eo = c.object(e, f) ?? {}
    c.keys(eo, f, ['name', 'path', 'access', 'networks', 'hosts', 'identities'])
    const access = eo.access === undefined ? 'ro' : eo.access
    if (access !== 'rw' && access !== 'ro') c.fail(`${f}.access`, 'must be "rw" or "ro"')
    const ex: ExportSpec = {
      name: c.string(eo.name, `${f}.name`, NAME, 'a lowercase name'),
      path: c.string(eo.path, `${f}.path`, EXPORT_PATH, 'an absolute path or s3://bucket'),
      access: access === 'rw' ? 'rw' : 'ro',
      networks: c.strings(eo.networks, `${f}.networks`, NAME, 'a network name'),
      hosts: c.strings(eo.hosts, `${f}.hosts`, HOST, 'a host name'),
      identities: c.strings(
        eo.identities,
        `${f}.identities`,
        /^(user|group|service):[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/,
        'user:NAME, group:NAME or service:NAME',
      ),
    }
    ex.networks.forEach((n, j) => {
      if (n && !netNames.has(n)) c.fail(`${f}.networks[${j}]`, `names no network ("${n}")`)
    })
    ex.hosts.forEach((h, j) => {
      if (h && !hostNames.has(h)) c.fail(`${f}.hosts[${j}]`, `names no host of hostPorts ("${h}")`)
    })
    if (ex.networks.length + ex.hosts.length + ex.identities.length === 0)
      c.fail(f, 'must grant at least one network, host or identity')
    return ex
  })
  c.unique(
    exports.map((e) => e.name),
    'storage.exports',
    'export name',
  )
  c.unique(
    exports.map((e) => e.path),
    'storage.exports',
    'export path',
  )

  const ko = o.kubernetes === undefined ? {} : (c.object(o.kubernetes, 'kubernetes') ?? {})
  c.keys(ko, 'kubernetes', ['clusters', 'namespaces', 'groups'])
  const kClusters = c.strings(ko.clusters, 'kubernetes.clusters', CLUSTER, 'a cluster name', 32)
  c.unique(kClusters, 'kubernetes.clusters', 'cluster')
  const namespaces = c.array(ko.namespaces, 'kubernetes.namespaces', 32).map((n, i) => {
    const f = `kubernetes.namespaces[${i}]`
    const no = c.object(n, f) ?? {}
    c.keys(no, f, ['name', 'gpus', 'cpu', 'memory'])
    return {
      name: c.string(no.name, `${f}.name`, /^[a-z][a-z0-9-]{0,20}$/, 'a DNS label of 1..21 chars'),
      gpus: no.gpus === undefined ? 0 : c.int(no.gpus, `${f}.gpus`, 0, 1_000_000),
      cpu: no.cpu === undefined ? '64' : c.string(no.cpu, `${f}.cpu`, QUANTITY, 'a quantity'),
      memory:
        no.memory === undefined
          ? '256Gi'
          : c.string(no.memory, `${f}.memory`, QUANTITY, 'a quantity'),
    }
  })
  if (kClusters.length > 0 && namespaces.length === 0)
    namespaces.push({ name: 'default', gpus: gpuQuota, cpu: '64', memory: '256Gi' })
  c.unique(
    namespaces.map((n) => n.name),
    'kubernetes.namespaces',
    'namespace',
  )
  const nsGpus = namespaces.reduce((s, n) => s + n.gpus, 0)
  if (nsGpus > gpuQuota)
    c.fail('kubernetes.namespaces', `GPU quotas add up to ${nsGpus}, above gpuQuota ${gpuQuota}`)
  const groups = c.array(ko.groups, 'kubernetes.groups', 64).map((g, i) => {
    const f = `kubernetes.groups[${i}]`
    const go = c.object(g, f) ?? {}
    c.keys(go, f, ['group', 'role'])
    const role = go.role
    if (role !== 'admin' && role !== 'edit' && role !== 'view')
      c.fail(`${f}.role`, 'must be admin, edit or view')
    return {
      group: c.string(go.group, `${f}.group`, GROUP, 'an IdP group name'),
      role: (role === 'admin' || role === 'edit' ? role : 'view') as GroupBinding['role'],
    }
  })

  const sl = o.slurm === undefined ? {} : (c.object(o.slurm, 'slurm') ?? {})
  c.keys(sl, 'slurm', ['clusters', 'nodes', 'users', 'gpus'])
  const sClusters = c.strings(sl.clusters, 'slurm.clusters', CLUSTER, 'a cluster name', 32)
  c.unique(sClusters, 'slurm.clusters', 'cluster')
  const nodes = c.strings(sl.nodes, 'slurm.nodes', HOST, 'a node name', 4096)
  c.unique(nodes, 'slurm.nodes', 'node')
  if (sClusters.length > 0 && nodes.length === 0)
    c.fail('slurm.nodes', 'must list the nodes of the tenant partition')
  const users = c.strings(sl.users, 'slurm.users', /^[a-z_][a-z0-9_-]{0,31}$/, 'a POSIX user name')
  c.unique(users, 'slurm.users', 'user')
  const sGpus = sl.gpus === undefined ? gpuQuota : c.int(sl.gpus, 'slurm.gpus', 0, 1_000_000)
  if (sGpus > gpuQuota) c.fail('slurm.gpus', `must not exceed gpuQuota ${gpuQuota}`)

  if (kClusters.length + sClusters.length === 0)
    c.fail(
      'kubernetes.clusters',
      'a tenant needs a compute layer: list a Kubernetes or Slurm cluster',
    )

  const ingress = c.array(o.ingress, 'ingress', 256).map((r, i) => {
    const f = `ingress[${i}]`
    const ro = c.object(r, f) ?? {}
    c.keys(ro, f, ['cidr', 'protocol', 'ports'])
    const cidr = c.string(ro.cidr, `${f}.cidr`, /./, 'a CIDR')
    // Tenant networks are IPv4, so only IPv4 sources can reach them through the perimeter.
    if (cidr && parseCidr(cidr)?.family !== 4)
      c.fail(`${f}.cidr`, 'must be an IPv4 network address/prefix')
    const protocol = ro.protocol
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'icmp')
      c.fail(`${f}.protocol`, 'must be tcp, udp or icmp')
    const ports = portRanges(c, ro.ports, `${f}.ports`)
    if (protocol === 'icmp' && ports.length > 0) c.fail(`${f}.ports`, 'must be empty for icmp')
    if (protocol !== 'icmp' && ports.length === 0) c.fail(`${f}.ports`, 'must list ports')
    if (cidr && parseCidr(cidr)?.prefix === 0)
      c.fail(`${f}.cidr`, 'must not allow the whole Internet (/0)')
    return { cidr, protocol: protocol as IngressRule['protocol'], ports }
  })

  if (c.errors.length > 0)
    throw problems.badRequest(
      `The tenant spec is invalid: ${c.errors[0]!.field} ${c.errors[0]!.message}`,
      c.errors,
    )
  return {
    apiVersion: 'dflare.dev/v1',
    kind: 'TenantIsolation',
    tenant,
    fabric,
    networks,
    hostPorts,
    gpuQuota,
    infiniband: { servicePorts: ibService },
    storage: { servicePorts: storageService, exports },
    kubernetes: { clusters: kClusters, namespaces: kClusters.length ? namespaces : [], groups },
    slurm: { clusters: sClusters, nodes, users, gpus: sClusters.length ? sGpus : 0 },
    ingress,
  }
}

/** Parses YAML or JSON text (JSON is YAML 1.2) and validates it. */
export function parseSpecText(text: string, tenant: string): TenantSpec {
  let doc: unknown
  try {
    doc = YAML.parse(text, { maxAliasCount: 0, uniqueKeys: true })
  } catch (err) {
    throw problems.badRequest(`The tenant spec is not valid YAML or JSON: ${firstLine(err)}`)
  }
  return validateSpec(doc, tenant)
}

function firstLine(err: unknown) {
  return String((err as Error).message ?? err).split('\n')[0]
}

/** A spec as YAML/JSON text (parsed, then validated) or as an already parsed document. */
export function readSpec(input: string | unknown, tenant: string): TenantSpec {
  return typeof input === 'string' ? parseSpecText(input, tenant) : validateSpec(input, tenant)
}
