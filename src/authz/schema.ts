/**
 * The Cedar schema of the platform (namespace `Dflare`), generated from the tables below so that
 * actions, their resource types and the role action groups cannot drift apart.
 *
 * Hierarchy: Tenant ← Domain ← Project ← resources (a resource may also sit directly in a
 * domain or tenant); NodePool may sit in a Cluster. Principals (User, ServiceAccount) are members
 * of Groups and of RoleBinding groups; a RoleBinding group stands for "role R at scope S" and is
 * the principal of the permit that grants R on S (see catalog.ts).
 */

export const NAMESPACE = 'Dflare'
export const SCOPE_TYPES = ['Tenant', 'Domain', 'Project'] as const
export type ScopeType = (typeof SCOPE_TYPES)[number]

export const ROLES = [
  'platform-admin',
  'security-officer',
  'auditor',
  'tenant-admin',
  'domain-admin',
  'project-admin',
  'member',
  'viewer',
  'billing-viewer',
] as const
export type Role = (typeof ROLES)[number]

/** Roles that only mean something at platform scope (they reach every tenant). */
export const PLATFORM_ROLES: readonly Role[] = ['platform-admin', 'security-officer']

type Verb = string
interface ResourceType {
  name: string
  /** Types it may sit in (its scope). */
  in: string[]
  verbs: Verb[]
}

const CRUD = ['read', 'list', 'create', 'update', 'delete']
const WORKLOAD_IN = ['Project', 'Domain', 'Tenant']

export const RESOURCE_TYPES: ResourceType[] = [
  { name: 'Tenant', in: [], verbs: CRUD },
  { name: 'Domain', in: ['Tenant'], verbs: CRUD },
  { name: 'Project', in: ['Domain', 'Tenant'], verbs: CRUD },
  { name: 'User', in: ['Group', 'RoleBinding', 'Domain', 'Tenant'], verbs: CRUD },
  { name: 'Group', in: ['Group', 'RoleBinding', 'Domain', 'Tenant'], verbs: CRUD },
  {
    name: 'ServiceAccount',
    in: ['Group', 'RoleBinding', 'Project', 'Domain', 'Tenant'],
    verbs: CRUD,
  },
  { name: 'RoleBinding', in: [], verbs: ['read', 'list', 'create', 'delete'] },
  { name: 'Cluster', in: WORKLOAD_IN, verbs: CRUD },
  { name: 'NodePool', in: ['Cluster', ...WORKLOAD_IN], verbs: CRUD },
  { name: 'Network', in: WORKLOAD_IN, verbs: CRUD },
  { name: 'Volume', in: WORKLOAD_IN, verbs: CRUD },
  { name: 'Certificate', in: WORKLOAD_IN, verbs: ['read', 'list', 'issue', 'revoke'] },
  { name: 'TenantSpec', in: ['Tenant'], verbs: ['read', 'plan', 'apply', 'destroy'] },
  { name: 'AuditLog', in: ['Tenant'], verbs: ['read', 'export'] },
  { name: 'Policy', in: ['Tenant'], verbs: [...CRUD, 'dryrun'] },
  { name: 'Session', in: ['User', 'Tenant'], verbs: ['read', 'list', 'revoke'] },
  // A user's passkeys (second factor); listed per user.
  { name: 'WebAuthnCredential', in: ['User', 'Tenant'], verbs: ['read', 'list', 'delete'] },
]

const WORKLOAD = ['Cluster', 'NodePool', 'Network', 'Volume']
const IAM = ['User', 'Group', 'ServiceAccount']

/** Action id: the resource type in lower case and the verb: `cluster.read`, `auditlog.export`, … */
export function actionId(type: string, verb: string) {
  return `${type.toLowerCase()}.${verb}`
}
const SERVICE_ACTIONS = ['authz.decide', 'billing.read']

/** Containers listed in besides the scopes: a cluster's node pools, a user's passkeys. */
const LIST_CONTAINERS: Record<string, string[]> = {
  NodePool: ['Cluster'],
  WebAuthnCredential: ['User'],
}

/** Resource types an action applies to: list/create act on the container, others on the item. */
function resourceTypesOf(type: string, verb: string): string[] {
  if (verb === 'list') return [...SCOPE_TYPES, ...(LIST_CONTAINERS[type] ?? [])]
  if (type === 'RoleBinding') return [...SCOPE_TYPES]
  return [type]
}

const all = RESOURCE_TYPES.flatMap((t) => t.verbs.map((v) => actionId(t.name, v)))
const pick = (types: string[], verbs: string[]) =>
  RESOURCE_TYPES.filter((t) => types.includes(t.name)).flatMap((t) =>
    t.verbs.filter((v) => verbs.includes(v)).map((v) => actionId(t.name, v)),
  )
const READ = ['read', 'list']

const viewer = pick(
  ['Tenant', 'Domain', 'Project', ...WORKLOAD, 'Certificate', 'TenantSpec', 'RoleBinding', ...IAM],
  READ,
)
const member = [...viewer, ...pick(WORKLOAD, ['create', 'update', 'delete'])]
const projectAdmin = [
  ...member,
  ...pick(['Project'], ['update']),
  ...pick(['RoleBinding'], ['create', 'delete']),
  ...pick(['ServiceAccount'], ['create', 'update', 'delete']),
  ...pick(['Certificate'], ['issue', 'revoke']),
]
const domainAdmin = [
  ...projectAdmin,
  ...pick(['Domain'], ['update']),
  ...pick(['Project'], ['create', 'delete']),
  ...pick(IAM, ['create', 'update', 'delete']),
]
const tenantAdmin = [
  ...domainAdmin,
  ...pick(['Tenant'], ['update']),
  ...pick(['Domain'], ['create', 'delete']),
  ...pick(['Policy'], [...CRUD, 'dryrun']),
  ...pick(['TenantSpec'], ['plan', 'apply', 'destroy']),
  ...pick(['AuditLog'], ['read']),
  ...pick(['Session'], ['read', 'list', 'revoke']),
  ...pick(['WebAuthnCredential'], ['read', 'list', 'delete']),
  'billing.read',
]
const auditor = pick(['AuditLog'], ['read'])
const securityOfficer = [
  ...auditor,
  ...pick(['AuditLog'], ['export']),
  ...pick(['Policy'], ['read', 'list', 'dryrun']),
  ...pick(['Session'], ['read', 'list', 'revoke']),
  ...pick(['WebAuthnCredential'], ['read', 'list', 'delete']),
  ...pick(['Certificate'], ['read', 'list', 'revoke']),
  ...pick(['TenantSpec', 'RoleBinding', 'Tenant', ...IAM], READ),
]

/** Role → its actions (the role's action group in the schema). */
export const ROLE_ACTIONS: Record<Role, string[]> = {
  'platform-admin': [...all, ...SERVICE_ACTIONS],
  'security-officer': securityOfficer,
  auditor,
  'tenant-admin': tenantAdmin,
  'domain-admin': domainAdmin,
  'project-admin': projectAdmin,
  member,
  viewer,
  'billing-viewer': ['billing.read'],
}

/** Actions that need MFA in `amr` and a recent authentication (for human principals). */
export const SENSITIVE_ACTIONS = [
  ...pick(['RoleBinding'], ['create', 'delete']),
  ...pick(['Policy'], ['create', 'update', 'delete']),
  ...pick(['Certificate'], ['issue', 'revoke']),
  ...pick(['TenantSpec'], ['apply', 'destroy']),
  ...pick(['Tenant', 'Domain', 'Project', 'User', 'ServiceAccount', ...WORKLOAD], ['delete']),
  ...pick(['ServiceAccount'], ['create']),
  ...pick(['AuditLog'], ['export']),
  ...pick(['Session'], ['revoke']),
  // Removing a second factor weakens how an account signs in.
  ...pick(['WebAuthnCredential'], ['delete']),
  'tenant.create',
]

/** Actions only principals of the platform tenant may ever perform. */
export const PLATFORM_ACTIONS = ['tenant.create', 'tenant.delete', 'authz.decide']

export const ACTIONS: readonly string[] = [...all, ...SERVICE_ACTIONS]

/** Cedar action group names. */
export const roleGroup = (role: Role) => `role:${role}`
export const SENSITIVE_GROUP = 'sensitive'
export const PLATFORM_GROUP = 'platform-only'

function groupsOf(action: string): string[] {
  const groups = ROLES.filter((r) => ROLE_ACTIONS[r].includes(action)).map(roleGroup)
  if (SENSITIVE_ACTIONS.includes(action)) groups.push(SENSITIVE_GROUP)
  if (PLATFORM_ACTIONS.includes(action)) groups.push(PLATFORM_GROUP)
  return groups
}

function appliesTo(action: string): string[] {
  if (action === 'authz.decide') return ['Tenant']
  if (action === 'billing.read') return [...SCOPE_TYPES]
  const verb = action.slice(action.indexOf('.') + 1)
  const rt = RESOURCE_TYPES.find((t) => actionId(t.name, verb) === action)!
  return resourceTypesOf(rt.name, verb)
}

const RESOURCE_ATTRS = 'tenant: String, name?: String, classification?: String'

function schemaText(): string {
  const lines: string[] = [`namespace ${NAMESPACE} {`]
  lines.push(
    '  type RequestContext = {',
    '    amr?: Set<String>,',
    '    auth_time?: Long,',
    '    now?: Long,',
    '    ip?: ipaddr,',
    '    hour?: Long,',
    '    weekday?: Long,',
    '    authenticated_via?: String,',
    '    scope_domain?: Domain,',
    '    scope_project?: Project,',
    '    token_scopes?: Set<String>,',
    '  };',
    '  entity RoleBinding { tenant: String, role: String, scope: String };',
  )
  for (const t of RESOURCE_TYPES) {
    if (t.name === 'RoleBinding') continue
    const parents = t.in.length ? ` in [${t.in.join(', ')}]` : ''
    let attrs = RESOURCE_ATTRS
    if (t.name === 'User') attrs += ', clearances?: Set<String>, email_verified?: Bool'
    if (t.name === 'ServiceAccount') attrs += ', network?: ipaddr, clearances?: Set<String>'
    lines.push(`  entity ${t.name}${parents} { ${attrs} } tags String;`)
  }
  const groups = [...ROLES.map(roleGroup), SENSITIVE_GROUP, PLATFORM_GROUP]
  for (const g of groups) lines.push(`  action "${g}";`)
  for (const a of ACTIONS) {
    const member = groupsOf(a)
      .map((g) => `"${g}"`)
      .join(', ')
    lines.push(
      `  action "${a}" in [${member}] appliesTo { principal: [User, ServiceAccount], resource: [${appliesTo(a).join(', ')}], context: RequestContext };`,
    )
  }
  lines.push('}')
  return lines.join('\n')
}

export const SCHEMA_TEXT = schemaText()

/** Parents of every action entity (role groups etc.), for the evaluator's entity set. */
export function actionEntities(): {
  uid: { type: string; id: string }
  parents: { type: string; id: string }[]
}[] {
  const type = `${NAMESPACE}::Action`
  const groups = [...ROLES.map(roleGroup), SENSITIVE_GROUP, PLATFORM_GROUP]
  return [
    ...groups.map((g) => ({ uid: { type, id: g }, parents: [] })),
    ...ACTIONS.map((a) => ({
      uid: { type, id: a },
      parents: groupsOf(a).map((id) => ({ type, id })),
    })),
  ]
}
