/**
 * Authorization benchmark: our compiled evaluator vs cedar-wasm `statefulIsAuthorized`, same run,
 * same policies (platform guard rails + role-binding policies + 1,000 tenants x 20 custom policies,
 * 100,000 users) and the same requests.
 *
 * Cedar gets its best fair setup: one preparsed policy set per tenant (platform + that tenant's
 * policies) and, per request, only the entities it needs (principal and resource with their
 * ancestors, and the action with its groups), built before timing starts. Our side is timed from
 * the request's JSON (uids and context) to the explained decision, slice building included.
 */
import { cpus, loadavg } from 'node:os'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import {
  deriveBindingGroup,
  type StoredEntity,
  sliceFrom,
  storedFromRecord,
} from '../src/authz/cache.ts'
import {
  type BindingGroup,
  bindingPolicy,
  isPlatformWide,
  platformPolicies,
} from '../src/authz/catalog.ts'
import { contextFromJson } from '../src/authz/cedar/entities.ts'
import { parsePolicySetText } from '../src/authz/cedar/parse.ts'
import { CompiledPolicySet, type PolicySource } from '../src/authz/cedar/policyset.ts'
import { EntityValue, SetValue } from '../src/authz/cedar/values.ts'
import type { EntityRecord } from '../src/authz/contract.ts'
import { Hierarchy } from '../src/authz/hierarchy.ts'
import { evaluatePrepared, SliceLookup } from '../src/authz/pdp.ts'
import { actionEntities, type Role } from '../src/authz/schema.ts'

// A full collection before each timed phase, for both sides alike: cedar-wasm's calls make V8
// request old-space collections (wasm memory growth), which would otherwise land in whichever
// side happens to run next.
setFlagsFromString('--expose-gc')
const settle = runInNewContext('gc') as () => void

const TENANTS = Number(process.env.BENCH_TENANTS ?? 1000)
const USERS_PER_TENANT = 100
const CUSTOM_PER_TENANT = 20
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 20000)
const D = 'Dflare'

/** Deterministic PRNG (mulberry32) so every run uses the same world and requests. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const rand = rng(42)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
const uid = (type: string, id: string) => ({ type: `${D}::${type}`, id })

interface Tenant {
  id: string
  projects: string[]
  domains: string[]
  resources: { type: string; id: string }[]
  users: string[]
  groups: BindingGroup[]
  custom: PolicySource[]
  customText: Record<string, string>
}

const TENANT_ROLES: Role[] = [
  'tenant-admin',
  'domain-admin',
  'project-admin',
  'member',
  'viewer',
  'billing-viewer',
  'auditor',
]

function customPolicies(t: string, projects: string[]): string {
  const out: string[] = []
  for (let i = 0; i < CUSTOM_PER_TENANT; i++) {
    const p = projects[i % projects.length]!
    const k = i % 5
    switch (k) {
      case 0:
        out.push(`@id("${t}.labels-${i}") permit (principal in ${D}::Group::"${t}-g${i % 3}", action == ${D}::Action::"cluster.read", resource in ${D}::Project::"${p}")
when { resource.hasTag("team") && resource.getTag("team") == "team${i % 3}" };`)
        break
      case 1:
        out.push(`@id("${t}.hours-${i}") forbid (principal, action == ${D}::Action::"volume.delete", resource in ${D}::Project::"${p}")
unless { context has hour && context.hour >= 6 && context.hour < 22 };`)
        break
      case 2:
        out.push(`@id("${t}.network-${i}") forbid (principal is ${D}::User, action in ${D}::Action::"role:member", resource in ${D}::Project::"${p}")
when { resource has classification && resource.classification == "internal" && context has ip && !context.ip.isInRange(ip("10.0.0.0/8")) };`)
        break
      case 3:
        out.push(`@id("${t}.clearance-${i}") permit (principal, action == ${D}::Action::"volume.read", resource in ${D}::Project::"${p}")
when { principal has clearances && principal.clearances.contains("vol-${i}") };`)
        break
      default:
        out.push(`@id("${t}.mfa-${i}") forbid (principal, action in ${D}::Action::"role:project-admin", resource in ${D}::Project::"${p}")
when { resource has classification && resource.classification == "sensitive-${i}" }
unless { context has amr && context.amr.contains("mfa") };`)
    }
  }
  return out.join('\n')
}

function buildWorld() {
  const entities = new Map<string, StoredEntity>()
  const put = (r: EntityRecord, extra: EntityValue[] = []) => {
    const s = storedFromRecord(r, extra, r.tags)
    entities.set(s.uid.key, s)
  }
  const tenants: Tenant[] = []
  for (let n = 0; n < TENANTS; n++) {
    const t = `t${n}`
    put({ uid: uid('Tenant', t), tenant: t, attrs: {}, parents: [] })
    const domains = [`${t}-d0`, `${t}-d1`]
    for (const d of domains)
      put({ uid: uid('Domain', d), tenant: t, attrs: {}, parents: [uid('Tenant', t)] })
    const projects: string[] = []
    const resources: { type: string; id: string }[] = []
    for (let j = 0; j < 10; j++) {
      const p = `${t}-p${j}`
      projects.push(p)
      put({
        uid: uid('Project', p),
        tenant: t,
        attrs: {},
        parents: [uid('Domain', domains[j % 2]!)],
      })
      for (let c = 0; c < 5; c++) {
        const type = pick(['Cluster', 'Volume', 'Network'])
        const id = `${p}-${type.toLowerCase()}${c}`
        const classification = pick(['internal', 'public', 'sensitive-4', 'restricted', undefined])
        put({
          uid: uid(type, id),
          tenant: t,
          attrs: classification ? { classification } : {},
          parents: [uid('Project', p)],
          tags: { team: `team${c % 3}` },
        })
        resources.push({ type, id })
      }
    }
    resources.push({ type: 'AuditLog', id: `${t}-audit` })
    put({ uid: uid('AuditLog', `${t}-audit`), tenant: t, attrs: {}, parents: [uid('Tenant', t)] })
    for (let g = 0; g < 3; g++)
      put({
        uid: uid('Group', `${t}-g${g}`),
        tenant: t,
        attrs: {},
        parents: [uid('Domain', domains[g % 2]!)],
      })
    const groups = new Map<string, BindingGroup>()
    const users: string[] = []
    for (let u = 0; u < USERS_PER_TENANT; u++) {
      const id = `${t}-u${u}`
      users.push(id)
      const bindings: EntityValue[] = []
      for (let b = 0; b < 1 + Math.floor(rand() * 2); b++) {
        const role = pick(TENANT_ROLES)
        const scope =
          role === 'tenant-admin' || role === 'auditor' || role === 'billing-viewer'
            ? { type: 'Tenant' as const, id: t }
            : role === 'domain-admin'
              ? { type: 'Domain' as const, id: pick(domains) }
              : { type: 'Project' as const, id: pick(projects) }
        const g: BindingGroup = { tenant: t, role, scope }
        groups.set(`${role}/${scope.type}/${scope.id}`, g)
        bindings.push(
          new EntityValue(`${D}::RoleBinding`, `${t}/${scope.type}/${scope.id}/${role}`),
        )
      }
      const parents = rand() < 0.5 ? [uid('Group', `${t}-g${u % 3}`)] : []
      put(
        {
          uid: uid('User', id),
          tenant: t,
          attrs: rand() < 0.2 ? { clearances: ['restricted', `vol-${u % 20}`] } : {},
          parents,
        },
        bindings,
      )
    }
    const customText = customPolicies(t, projects)
    const custom = parsePolicySetText(customText).map(({ id, json }) => ({ id, json }))
    tenants.push({
      id: t,
      projects,
      domains,
      resources,
      users,
      groups: [...groups.values()],
      custom,
      customText: {},
    })
  }
  // Platform operators.
  put({ uid: uid('Tenant', 'platform'), tenant: 'platform', attrs: {}, parents: [] })
  const platformGroups: BindingGroup[] = [
    { tenant: 'platform', role: 'platform-admin', scope: { type: 'Tenant', id: 'platform' } },
    { tenant: 'platform', role: 'security-officer', scope: { type: 'Tenant', id: 'platform' } },
  ]
  put({ uid: uid('User', 'op-admin'), tenant: 'platform', attrs: {}, parents: [] }, [
    new EntityValue(`${D}::RoleBinding`, 'platform/Tenant/platform/platform-admin'),
  ])
  put({ uid: uid('User', 'op-sec'), tenant: 'platform', attrs: {}, parents: [] }, [
    new EntityValue(`${D}::RoleBinding`, 'platform/Tenant/platform/security-officer'),
  ])
  return { entities, tenants, platformGroups }
}

const ACTIONS = [
  'cluster.read',
  'cluster.update',
  'cluster.delete',
  'volume.read',
  'volume.delete',
  'network.update',
  'auditlog.read',
  'cluster.list',
]

interface Req {
  tenant: string
  principal: { type: string; id: string }
  action: { type: string; id: string }
  resource: { type: string; id: string }
  context: Record<string, unknown>
}

function buildRequests(tenants: Tenant[]): Req[] {
  const reqs: Req[] = []
  const now = 1_780_000_000
  for (let i = 0; i < REQUESTS; i++) {
    const t = pick(tenants)
    const crossTenant = rand() < 0.1
    const target = crossTenant ? pick(tenants) : t
    const operator = rand() < 0.02
    const principal = operator
      ? uid('User', pick(['op-admin', 'op-sec']))
      : uid('User', pick(t.users))
    const r = pick(target.resources)
    const act =
      r.type === 'AuditLog'
        ? 'auditlog.read'
        : pick(ACTIONS.filter((a) => a.startsWith(r.type.toLowerCase())))
    const context: Record<string, unknown> = {
      hour: Math.floor(rand() * 24),
      ip: { __extn: { fn: 'ip', arg: pick(['10.1.2.3', '192.0.2.10']) } },
    }
    if (rand() < 0.6) {
      context.amr = rand() < 0.7 ? ['pwd', 'mfa'] : ['pwd']
      context.auth_time = now - Math.floor(rand() * 1800)
    }
    context.now = now
    reqs.push({
      tenant: target.id,
      principal,
      action: uid('Action', act),
      resource: uid(r.type, r.id),
      context,
    })
  }
  return reqs
}

function percentile(sorted: Float64Array, p: number) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

function summarize(latNs: Float64Array, totalNs: number) {
  const sorted = Float64Array.from(latNs).sort()
  return {
    decisionsPerSecond: Math.round((latNs.length / totalNs) * 1e9),
    p50Us: +(percentile(sorted, 50) / 1000).toFixed(2),
    p99Us: +(percentile(sorted, 99) / 1000).toFixed(2),
  }
}

export async function main(args: string[]) {
  const json = args.includes('--json')
  const log = (m: string) => {
    if (!json) process.stderr.write(`${m}\n`)
  }
  const t0 = performance.now()
  const { entities, tenants, platformGroups } = buildWorld()
  const requests = buildRequests(tenants)
  log(
    `world: ${entities.size} entities, ${tenants.length} tenants, ${requests.length} requests (${(performance.now() - t0).toFixed(0)} ms)`,
  )

  // Ours: compiled global set + one compiled set per tenant.
  const platform = [
    ...platformPolicies(),
    ...platformGroups.filter(isPlatformWide).map(bindingPolicy),
  ]
  const global = new CompiledPolicySet(platform)
  const ourSets = new Map<string, { global: CompiledPolicySet; tenant: CompiledPolicySet }>()
  let policyCount = platform.length
  for (const t of tenants) {
    const tenantPolicies = [...t.groups.map(bindingPolicy), ...t.custom]
    policyCount += tenantPolicies.length
    ourSets.set(t.id, { global, tenant: new CompiledPolicySet(tenantPolicies) })
  }

  // Cedar: one preparsed set per tenant (platform + that tenant's policies).
  const t1 = performance.now()
  for (const t of tenants) {
    const staticPolicies: Record<string, cedar.Policy> = {}
    for (const p of [...platform, ...t.groups.map(bindingPolicy), ...t.custom])
      staticPolicies[p.id] = p.json as unknown as cedar.PolicyJson
    const r = cedar.preparsePolicySet(`t:${t.id}`, { staticPolicies })
    if (r.type !== 'success') throw new Error(`preparse ${t.id}: ${JSON.stringify(r.errors)}`)
  }
  log(`cedar preparse: ${(performance.now() - t1).toFixed(0)} ms`)

  const actions = new Map(actionEntities().map((a) => [`${a.uid.type}\u0000${a.uid.id}`, a]))
  const entityJson = (s: StoredEntity) => ({
    uid: { type: s.uid.type, id: s.uid.id },
    attrs: Object.fromEntries(
      [...s.attrs].map(([k, v]) => [k, v instanceof SetValue ? v.items : v]),
    ),
    parents: s.parents.map((p) => ({ type: p.type, id: p.id })),
    tags: Object.fromEntries(s.tags),
  })
  const cedarCalls = requests.map((r) => {
    const roots = [
      new EntityValue(r.principal.type, r.principal.id),
      new EntityValue(r.resource.type, r.resource.id),
    ]
    const slice = sliceFrom((k) => entities.get(k) ?? null, roots)!
    const list: cedar.EntityJson[] = []
    for (const [key, data] of slice) {
      const stored = entities.get(key)
      if (stored) list.push(entityJson(stored) as cedar.EntityJson)
      else
        list.push({
          uid: { type: data.uid.type, id: data.uid.id },
          attrs: Object.fromEntries(data.attrs) as Record<string, cedar.CedarValueJson>,
          parents: [],
        })
    }
    const act = actions.get(`${r.action.type}\u0000${r.action.id}`)!
    list.push({ uid: act.uid, attrs: {}, parents: act.parents })
    for (const p of act.parents) list.push({ uid: p, attrs: {}, parents: [] })
    return {
      principal: r.principal,
      action: r.action,
      resource: r.resource,
      context: r.context as cedar.Context,
      preparsedPolicySetId: `t:${r.tenant}`,
      entities: list,
    } satisfies cedar.StatefulAuthorizationCall
  })

  log(`cedar requests built: ${(performance.now() - t0).toFixed(0)} ms`)

  // Our side reads the same in-memory hierarchy the PDP's cache keeps (closures computed once).
  const hierarchy = new Hierarchy(deriveBindingGroup)
  for (const [key, s] of entities) hierarchy.set(key, s)
  const lookup = new SliceLookup(hierarchy)
  const ours = (r: Req) => {
    const principal = new EntityValue(r.principal.type, r.principal.id)
    const resource = new EntityValue(r.resource.type, r.resource.id)
    const p = hierarchy.get(principal.key)
    const res = hierarchy.get(resource.key)
    if (!p?.complete || !res?.complete) throw new Error('incomplete hierarchy')
    const tenant = res.attrs.get('tenant') as string
    return evaluatePrepared(
      {
        tenant,
        roots: [principal, resource],
        live: true,
        principal,
        action: new EntityValue(r.action.type, r.action.id),
        resource,
        context: contextFromJson(r.context),
        lookup,
      },
      ourSets.get(tenant)!,
    )
  }

  // Same decisions and determining policies on every request (checked outside the timing).
  let mismatches = 0
  let allows = 0
  for (let i = 0; i < requests.length; i++) {
    const a = ours(requests[i]!)
    const b = cedar.statefulIsAuthorized(cedarCalls[i]!)
    if (b.type !== 'success') throw new Error(JSON.stringify(b.errors))
    const cedarDecision = b.response.diagnostics.errors.some((e) =>
      e.policyId.startsWith('platform.'),
    )
      ? 'deny'
      : b.response.decision
    if (a.decision === 'allow') allows++
    if (
      a.decision !== cedarDecision ||
      [...a.determining].sort().join() !== [...b.response.diagnostics.reason].sort().join()
    )
      mismatches++
  }

  log(`decisions compared: ${(performance.now() - t0).toFixed(0)} ms`)

  // Interleaved in chunks so both sides run under the same machine load (2 shared cores).
  const CHUNK = 500
  for (let i = 0; i < Math.min(2000, requests.length); i++) {
    ours(requests[i]!)
    cedar.statefulIsAuthorized(cedarCalls[i]!)
  }
  // Wall-clock latency includes being descheduled on a busy shared machine; CPU time (getrusage,
  // µs resolution) does not, so both are reported.
  const latOurs = new Float64Array(requests.length)
  const latCedar = new Float64Array(requests.length)
  const cpuOurs = new Float64Array(requests.length)
  const cpuCedar = new Float64Array(requests.length)
  let totalOurs = 0
  let totalCedar = 0
  const cpuNow = () => {
    const u = process.cpuUsage()
    return u.user + u.system
  }
  const run = (i: number, fn: (i: number) => unknown, lat: Float64Array, cpu: Float64Array) => {
    const c = cpuNow()
    const s = process.hrtime.bigint()
    fn(i)
    lat[i] = Number(process.hrtime.bigint() - s)
    cpu[i] = (cpuNow() - c) * 1000
  }
  const cedarFn = (i: number) => cedar.statefulIsAuthorized(cedarCalls[i]!)
  const oursFn = (i: number) => ours(requests[i]!)
  for (let from = 0; from < requests.length; from += CHUNK) {
    const to = Math.min(requests.length, from + CHUNK)
    settle()
    let start = process.hrtime.bigint()
    for (let i = from; i < to; i++) run(i, cedarFn, latCedar, cpuCedar)
    totalCedar += Number(process.hrtime.bigint() - start)
    settle()
    start = process.hrtime.bigint()
    for (let i = from; i < to; i++) run(i, oursFn, latOurs, cpuOurs)
    totalOurs += Number(process.hrtime.bigint() - start)
  }
  // Throughput without per-request probes, also interleaved, in wall and CPU time.
  const throughput = (fn: (i: number) => unknown) => {
    settle()
    const c = cpuNow()
    const s = process.hrtime.bigint()
    for (let i = 0; i < requests.length; i++) fn(i)
    const wallNs = Number(process.hrtime.bigint() - s)
    const cpuNs = (cpuNow() - c) * 1000
    return {
      wall: Math.round((requests.length / wallNs) * 1e9),
      cpu: Math.round((requests.length / cpuNs) * 1e9),
    }
  }
  log(`latency runs: ${(performance.now() - t0).toFixed(0)} ms`)
  const cedarTp = throughput(cedarFn)
  const oursTp = throughput(oursFn)
  const withCpu = (
    wall: ReturnType<typeof summarize>,
    cpu: Float64Array,
    tp: { wall: number; cpu: number },
  ) => {
    const sorted = Float64Array.from(cpu).sort()
    return {
      ...wall,
      decisionsPerSecond: tp.wall,
      decisionsPerCpuSecond: tp.cpu,
      cpuP50Us: +(percentile(sorted, 50) / 1000).toFixed(1),
      cpuP99Us: +(percentile(sorted, 99) / 1000).toFixed(1),
    }
  }
  const cedarStats = withCpu(summarize(latCedar, totalCedar), cpuCedar, cedarTp)
  const ourStats = withCpu(summarize(latOurs, totalOurs), cpuOurs, oursTp)

  const result = {
    bench: 'authz',
    tenants: tenants.length,
    users: tenants.length * USERS_PER_TENANT,
    policies: policyCount,
    requests: requests.length,
    allowRate: +(allows / requests.length).toFixed(3),
    mismatches,
    ours: ourStats,
    cedarWasm: cedarStats,
    throughputRatio: +(ourStats.decisionsPerSecond / cedarStats.decisionsPerSecond).toFixed(1),
    cpuThroughputRatio: +(
      ourStats.decisionsPerCpuSecond / cedarStats.decisionsPerCpuSecond
    ).toFixed(1),
    targets: { ratioAtLeast: 50, p99UnderUs: 50 },
    loadAverage1m: +loadavg()[0]!.toFixed(2),
    cpus: cpus().length,
  }
  process.stdout.write(`${JSON.stringify(result, null, json ? undefined : 2)}\n`)
}
