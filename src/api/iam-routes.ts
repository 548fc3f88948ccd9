/**
 * The identity API (`/api/v1/tenants…`): tenants, domains, projects, users, groups, service
 * accounts, sessions and role bindings, declared as gateway routes (authenticated, authorized by
 * the PDP, audited). Writes run the IAM management functions inside the gateway's transaction
 * (see admin-tx.ts), so each one commits with exactly one `api.request` audit event that carries
 * the domain event. Every resource is looked up inside the tenant named in the path only.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import type { EntityRecord, EntityUid, Pdp } from '../authz/contract.ts'
import { ROLES, type Role, type ScopeType } from '../authz/schema.ts'
import {
  addRoleBinding,
  listRoleBindings,
  type RoleBindingInput,
  removeRoleBinding,
} from '../authz/writer.ts'
import type { Db, Queryable, SqlValue, Transaction } from '../core/db/index.ts'
import { type FieldError, Problem, problems } from '../core/errors.ts'
import type { Principal } from '../gateway/principal.ts'
import {
  type AnyApiRoute,
  type CallContext,
  defineRoute,
  type JsonSchema,
  type ResourceRef,
} from '../gateway/route.ts'
import {
  type Client,
  createClient,
  deleteClient,
  listClients,
  rotateClientSecret,
} from '../iam/admin/clients.ts'
import { type AdminActor, type AdminDeps, ID, uid } from '../iam/admin/context.ts'
import {
  addMember,
  createDomain,
  createDomainSchema,
  createGroup,
  createGroupSchema,
  createProject,
  createProjectSchema,
  deleteDomain,
  deleteProject,
  listDomains,
  listGroups,
  listProjects,
  removeMember,
} from '../iam/admin/directory.ts'
import {
  createRealm,
  createRealmSchema,
  getRealm,
  listRealms,
  realmSchema,
  updateRealm,
  updateRealmSchema,
} from '../iam/admin/realms.ts'
import { listSessions, revokeSession } from '../iam/admin/sessions.ts'
import {
  createUser,
  createUserSchema,
  deleteUser,
  getUser,
  listUsers,
  unlockUser,
  updateUser,
  userSchema,
} from '../iam/admin/users.ts'
import { type CapturedEvent, txAdminDeps } from './admin-tx.ts'
import { assertMayDelegate } from './delegation.ts'
import { decodeCursor, page, paginationQuery } from './pagination.ts'
import { tenantParam } from './schemas.ts'
import { readInTenant } from './tenant-scope.ts'

export interface IdentityRouteDeps {
  /** The IAM management dependencies (database, entity writer, sealer, event sink). */
  admin: AdminDeps
  /** The decision point, asked again when a role is granted (no delegation beyond one's own). */
  pdp: Pdp
}

const PLATFORM = 'platform'
const TAGS = ['identity']
const CLIENT_ID = '^[a-z0-9][a-z0-9_-]{2,63}$'
const SESSION_ID = '^[A-Za-z0-9_-]{1,128}$'
const UUID = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

const itemId = { type: 'string', pattern: ID.source } as const
const userId = { type: 'string', pattern: UUID } as const
const clientId = { type: 'string', pattern: CLIENT_ID } as const

/** Params schema: every listed parameter required, nothing else. */
function params(props: Record<string, JsonSchema>): JsonSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: Object.keys(props),
    properties: props,
  }
}
const tenantOnly = params({ tenant: tenantParam })
const listQuery = (extra: Record<string, JsonSchema> = {}): JsonSchema => ({
  type: 'object',
  additionalProperties: false,
  properties: { ...paginationQuery, ...extra },
})
const listOf = (item: JsonSchema): JsonSchema => ({
  type: 'object',
  properties: { items: { type: 'array', items: item }, next_cursor: { type: 'string' } },
})

type ListQuery = { limit: number; cursor?: string }
type T = { tenant: string }

/** A page of an already-loaded list, ordered by `key` (the lists are per tenant and small). */
function paged<R>(rows: R[], query: ListQuery, key: (r: R) => string) {
  const after = decodeCursor(query.cursor)
  const sorted = rows
    .map((r) => [key(r), r] as const)
    .filter(([k]) => after === undefined || k > after)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, r]) => r)
  return page(sorted.slice(0, query.limit + 1), query.limit, key)
}

const who = (call: CallContext): AdminActor => ({
  actor: call.actor,
  correlationId: call.correlationId,
  sourceIp: call.sourceIp,
})

/** Secret-free audit detail: the domain events the change produced. */
const auditOf = (events: CapturedEvent[], extra: Record<string, unknown> = {}) => ({
  ...extra,
  events: events.map((e) => ({
    type: e.type,
    action: e.action,
    ...(e.resource ? { resource: e.resource } : {}),
    ...(e.details ? { details: e.details } : {}),
  })),
})

const tenantRef = (tenant: string): ResourceRef => ({ uid: uid.tenant(tenant), tenant })

/** A not-yet-existing entity described for the decision only (never stored from here). */
function newEntity(
  tenant: string,
  entityUid: EntityUid,
  parents: EntityUid[],
  attrs: Record<string, unknown> = {},
): ResourceRef {
  const record: EntityRecord = { uid: entityUid, tenant, attrs, parents }
  return { uid: entityUid, tenant, entities: [record] }
}

/** Items a write produces get their tenant-qualified Cedar uid as the audited resource. */
const audited = (u: EntityUid) => ({ type: u.type, id: u.id })

/** Sends secrets only where nothing caches them; refuses Idempotency-Key (the replay store). */
function refuseIdempotentSecret(request: { headers: Record<string, unknown> }) {
  if (request.headers['idempotency-key'] !== undefined)
    throw problems.badRequest(
      'Idempotency-Key is not accepted on an operation that returns a secret',
      [{ field: 'headers.idempotency-key', message: 'is not accepted here' }],
    )
}

/** The management functions name input fields bare; the API names them where they came from. */
function inBody(err: unknown): never {
  if (err instanceof Problem && err.status === 400 && Array.isArray(err.extensions.errors)) {
    const errors = (err.extensions.errors as FieldError[]).map((e) => ({
      field: e.field.startsWith('body.') ? e.field : `body.${e.field}`,
      message: e.message,
    }))
    throw problems.badRequest(`${errors[0]?.field} ${errors[0]?.message}`, errors)
  }
  throw err
}

function fieldMissing(field: string): never {
  throw problems.badRequest(`${field} does not exist`, [{ field, message: 'does not exist' }])
}

export function identityRoutes(deps: IdentityRouteDeps): AnyApiRoute[] {
  const admin = deps.admin

  /** Read-only, as `dflare_app` confined to the tenant by row-level security. */
  const read = <R>(tenant: string, fn: (d: { db: Db }) => Promise<R>) =>
    readInTenant(admin.db, tenant, (q) => fn({ db: q as Db }))
  const exists = (tenant: string, sql: string, args: SqlValue[]) =>
    readInTenant(
      admin.db,
      tenant,
      async (q: Queryable) => (await q.query(sql, args)).rows.length > 0,
    )
  /**
   * Clients and OIDC sessions stay private to the iam module (no grant to `dflare_app`): they are
   * read with the module's own access, always filtered by the path's tenant.
   */
  const privateExists = async (sql: string, args: SqlValue[]) =>
    (await admin.db.query(sql, args)).rows.length > 0

  /** Runs IAM management functions in the gateway's transaction, capturing their events. */
  async function write<R>(
    tx: Transaction | undefined,
    fn: (d: AdminDeps) => Promise<R>,
  ): Promise<{ result: R; events: CapturedEvent[] }> {
    if (!tx) throw problems.internal()
    const bound = txAdminDeps(admin, tx)
    const result = await fn(bound.deps).catch(inBody)
    return { result, events: bound.events }
  }

  const domainExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.domains WHERE realm = $1 AND id = $2', [t, id])
  const projectExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.projects WHERE realm = $1 AND id = $2', [t, id])
  const groupExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.groups WHERE realm = $1 AND id = $2', [t, id])
  const userExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.users WHERE realm = $1 AND id = $2', [t, id])
  const serviceAccountExists = (t: string, id: string) =>
    privateExists(
      'SELECT 1 FROM iam.clients WHERE realm = $1 AND client_id = $2 AND service_account',
      [t, id],
    )

  return [
    ...tenantRoutes(),
    ...domainRoutes(),
    ...projectRoutes(),
    ...userRoutes(),
    ...groupRoutes(),
    ...serviceAccountRoutes(),
    ...sessionRoutes(),
    ...roleBindingRoutes(),
  ]

  function tenantRoutes(): AnyApiRoute[] {
    type CreateBody = { id: string; displayName?: string; mfaPolicy?: string }
    return [
      defineRoute<Record<string, never>, ListQuery>({
        method: 'GET',
        url: '/tenants',
        action: 'tenant.list',
        summary: 'List tenants (platform operators)',
        tags: TAGS,
        schema: { querystring: listQuery(), response: { 200: listOf(realmSchema) } },
        resource: () => tenantRef(PLATFORM),
        handler: async ({ query }) => ({
          body: paged(await listRealms(admin), query, (r) => r.id),
        }),
      }),
      defineRoute<Record<string, never>, Record<string, never>, CreateBody>({
        method: 'POST',
        url: '/tenants',
        action: 'tenant.create',
        summary: 'Create a tenant (its realm and Tenant entity)',
        tags: TAGS,
        schema: { body: createRealmSchema, response: { 201: realmSchema } },
        // The platform owns the act of creating a tenant; an existing one is decided on as is
        // (and answers 409 when allowed).
        resource: async ({ body }) => {
          const { rows } = await admin.db.query('SELECT 1 FROM iam.realms WHERE id = $1', [body.id])
          if (rows.length > 0) return { uid: uid.tenant(body.id), tenant: PLATFORM }
          return newEntity(PLATFORM, uid.tenant(body.id), [], { name: body.displayName ?? body.id })
        },
        handler: async ({ tx, call, body }) => {
          const { result, events } = await write(tx, (d) => createRealm(d, who(call), body))
          return {
            status: 201,
            body: result,
            headers: { location: `/api/v1/tenants/${result.id}` },
            audit: auditOf(events, { tenant: result.id }),
            auditResource: audited(uid.tenant(result.id)),
          }
        },
      }),
      defineRoute<T>({
        method: 'GET',
        url: '/tenants/:tenant',
        action: 'tenant.read',
        summary: 'Read a tenant',
        tags: TAGS,
        schema: { params: tenantOnly, response: { 200: realmSchema } },
        resource: async ({ tenant }) =>
          (await exists(tenant, 'SELECT 1 FROM iam.realms WHERE id = $1', [tenant]))
            ? tenantRef(tenant)
            : undefined,
        handler: async ({ tenant }) => ({ body: await read(tenant, (d) => getRealm(d, tenant)) }),
      }),
      defineRoute<T, Record<string, never>, Record<string, unknown>>({
        method: 'PATCH',
        url: '/tenants/:tenant',
        action: 'tenant.update',
        summary: "Update a tenant's display name, MFA policy, token lifetime or status",
        tags: TAGS,
        schema: {
          params: tenantOnly,
          body: { ...updateRealmSchema, minProperties: 1 },
          response: { 200: realmSchema },
        },
        resource: async ({ tenant }) =>
          (await exists(tenant, 'SELECT 1 FROM iam.realms WHERE id = $1', [tenant]))
            ? tenantRef(tenant)
            : undefined,
        handler: async ({ tx, call, tenant, body, principal }) => {
          // Suspending a tenant (or lifting a suspension) is the platform operators' decision.
          if (body.disabled !== undefined && principal.realm !== PLATFORM)
            throw problems.forbidden('Only platform operators suspend or resume a tenant')
          const { result, events } = await write(tx, (d) => updateRealm(d, who(call), tenant, body))
          return { body: result, audit: auditOf(events) }
        },
      }),
    ]
  }

  function domainRoutes(): AnyApiRoute[] {
    const base = '/tenants/:tenant/domains'
    type Item = T & { domain: string }
    type Body = { id: string; name: string; description?: string }
    const domainSchema = createDomainSchema
    return [
      defineRoute<T, ListQuery>({
        method: 'GET',
        url: base,
        action: 'domain.list',
        summary: 'List domains',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          querystring: listQuery(),
          response: { 200: listOf(domainSchema) },
        },
        resource: ({ tenant }) => tenantRef(tenant),
        handler: async ({ tenant, query }) => ({
          body: paged(await read(tenant, (d) => listDomains(d, tenant)), query, (r) => r.id),
        }),
      }),
      defineRoute<T, Record<string, never>, Body>({
        method: 'POST',
        url: base,
        action: 'domain.create',
        summary: 'Create a domain',
        tags: TAGS,
        schema: { params: tenantOnly, body: createDomainSchema, response: { 201: domainSchema } },
        resource: async ({ tenant, body }) =>
          (await domainExists(tenant, body.id))
            ? { uid: uid.domain(tenant, body.id), tenant }
            : newEntity(tenant, uid.domain(tenant, body.id), [uid.tenant(tenant)], {
                name: body.name,
              }),
        handler: async ({ tx, call, tenant, body }) => {
          const { result, events } = await write(tx, (d) =>
            createDomain(d, who(call), tenant, body),
          )
          return {
            status: 201,
            body: result,
            audit: auditOf(events),
            auditResource: audited(uid.domain(tenant, result.id)),
          }
        },
      }),
      defineRoute<Item>({
        method: 'DELETE',
        url: `${base}/:domain`,
        action: 'domain.delete',
        summary: 'Delete an empty domain',
        tags: TAGS,
        schema: { params: params({ tenant: tenantParam, domain: itemId }) },
        resource: async ({ tenant, params: p }) =>
          (await domainExists(tenant, p.domain))
            ? { uid: uid.domain(tenant, p.domain), tenant }
            : undefined,
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) => deleteDomain(d, who(call), tenant, p.domain))
          return { status: 204, audit: auditOf(events) }
        },
      }),
    ]
  }

  function projectRoutes(): AnyApiRoute[] {
    const base = '/tenants/:tenant/projects'
    type Item = T & { project: string }
    type Body = { id: string; name: string; domainId: string; description?: string }
    const projectSchema = createProjectSchema
    return [
      defineRoute<T, ListQuery & { domainId?: string }>({
        method: 'GET',
        url: base,
        action: 'project.list',
        summary: 'List projects (optionally of one domain)',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          querystring: listQuery({ domainId: itemId }),
          response: { 200: listOf(projectSchema) },
        },
        // Filtered by a domain, the listing acts on that domain (so domain admins may list it).
        resource: async ({ tenant, query }) => {
          if (!query.domainId) return tenantRef(tenant)
          return (await domainExists(tenant, query.domainId))
            ? { uid: uid.domain(tenant, query.domainId), tenant }
            : undefined
        },
        handler: async ({ tenant, query }) => ({
          body: paged(
            await read(tenant, (d) => listProjects(d, tenant, query.domainId)),
            query,
            (r) => r.id,
          ),
        }),
      }),
      defineRoute<T, Record<string, never>, Body>({
        method: 'POST',
        url: base,
        action: 'project.create',
        summary: 'Create a project in a domain',
        tags: TAGS,
        schema: { params: tenantOnly, body: createProjectSchema, response: { 201: projectSchema } },
        resource: async ({ tenant, body }) => {
          if (!(await domainExists(tenant, body.domainId))) fieldMissing('body.domainId')
          return (await projectExists(tenant, body.id))
            ? { uid: uid.project(tenant, body.id), tenant }
            : newEntity(tenant, uid.project(tenant, body.id), [uid.domain(tenant, body.domainId)], {
                name: body.name,
              })
        },
        handler: async ({ tx, call, tenant, body }) => {
          const { result, events } = await write(tx, (d) =>
            createProject(d, who(call), tenant, body),
          )
          return {
            status: 201,
            body: result,
            audit: auditOf(events),
            auditResource: audited(uid.project(tenant, result.id)),
          }
        },
      }),
      defineRoute<Item>({
        method: 'DELETE',
        url: `${base}/:project`,
        action: 'project.delete',
        summary: 'Delete a project',
        tags: TAGS,
        schema: { params: params({ tenant: tenantParam, project: itemId }) },
        resource: async ({ tenant, params: p }) =>
          (await projectExists(tenant, p.project))
            ? { uid: uid.project(tenant, p.project), tenant }
            : undefined,
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) => deleteProject(d, who(call), tenant, p.project))
          return { status: 204, audit: auditOf(events) }
        },
      }),
    ]
  }

  function userRoutes(): AnyApiRoute[] {
    const base = '/tenants/:tenant/users'
    type Item = T & { user: string }
    const itemParams = params({ tenant: tenantParam, user: userId })
    const existing = async ({ tenant, params: p }: { tenant: string; params: Item }) =>
      (await userExists(tenant, p.user)) ? { uid: uid.user(tenant, p.user), tenant } : undefined
    const updateSchema = {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      properties: {
        email: userSchema.properties.email,
        displayName: { type: 'string', maxLength: 200 },
        isAdmin: { type: 'boolean' },
        disabled: { type: 'boolean' },
        mustEnrollMfa: { type: 'boolean' },
      },
    }
    return [
      defineRoute<T, ListQuery>({
        method: 'GET',
        url: base,
        action: 'user.list',
        summary: 'List users',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          querystring: listQuery(),
          response: { 200: listOf(userSchema) },
        },
        resource: ({ tenant }) => tenantRef(tenant),
        handler: async ({ tenant, query }) => ({
          body: paged(await read(tenant, (d) => listUsers(d, tenant)), query, (u) => u.username),
        }),
      }),
      defineRoute<T, Record<string, never>, Record<string, unknown> & { domainId?: string }>({
        method: 'POST',
        url: base,
        action: 'user.create',
        summary: 'Create a user (optionally in a domain, optionally with an initial password)',
        tags: TAGS,
        schema: { params: tenantOnly, body: createUserSchema, response: { 201: userSchema } },
        // The user's id is made at creation: the decision is on a placeholder placed where the
        // user will sit (its domain, else the tenant).
        resource: async ({ tenant, body }) => {
          if (body.domainId !== undefined && !(await domainExists(tenant, body.domainId)))
            fieldMissing('body.domainId')
          const parent = body.domainId ? uid.domain(tenant, body.domainId) : uid.tenant(tenant)
          return newEntity(tenant, uid.user(tenant, `new-${randomUUID()}`), [parent], {
            username: String(body.username),
            isAdmin: body.isAdmin === true,
          })
        },
        handler: async ({ tx, call, tenant, body }) => {
          const { result, events } = await write(tx, (d) => createUser(d, who(call), tenant, body))
          return {
            status: 201,
            body: result,
            headers: { location: `/api/v1/tenants/${tenant}/users/${result.id}` },
            audit: auditOf(events),
            auditResource: audited(uid.user(tenant, result.id)),
          }
        },
      }),
      defineRoute<Item>({
        method: 'GET',
        url: `${base}/:user`,
        action: 'user.read',
        summary: 'Read a user',
        tags: TAGS,
        schema: { params: itemParams, response: { 200: userSchema } },
        resource: existing,
        handler: async ({ tenant, params: p }) => ({
          body: await read(tenant, (d) => getUser(d, tenant, p.user)),
        }),
      }),
      defineRoute<Item, Record<string, never>, Record<string, unknown>>({
        method: 'PATCH',
        url: `${base}/:user`,
        action: 'user.update',
        summary: 'Update a user (disabling ends their sessions)',
        tags: TAGS,
        schema: { params: itemParams, body: updateSchema, response: { 200: userSchema } },
        resource: existing,
        handler: async ({ tx, call, tenant, params: p, body }) => {
          const { result, events } = await write(tx, (d) =>
            updateUser(d, who(call), tenant, p.user, body),
          )
          return { body: result, audit: auditOf(events) }
        },
      }),
      defineRoute<Item>({
        method: 'DELETE',
        url: `${base}/:user`,
        action: 'user.delete',
        summary: 'Delete a user (ends their sessions)',
        tags: TAGS,
        schema: { params: itemParams },
        resource: existing,
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) => deleteUser(d, who(call), tenant, p.user))
          return { status: 204, audit: auditOf(events) }
        },
      }),
      defineRoute<Item, Record<string, never>, Record<string, never>>({
        method: 'POST',
        url: `${base}/:user/unlock`,
        action: 'user.update',
        summary: "Lift a user's lockout",
        tags: TAGS,
        schema: { params: itemParams },
        resource: existing,
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) => unlockUser(d, who(call), tenant, p.user))
          return { status: 204, audit: auditOf(events) }
        },
      }),
    ]
  }

  function groupRoutes(): AnyApiRoute[] {
    const base = '/tenants/:tenant/groups'
    type Member = T & { group: string; user: string }
    const memberParams = params({ tenant: tenantParam, group: itemId, user: userId })
    const memberResource = async ({ tenant, params: p }: { tenant: string; params: Member }) =>
      (await groupExists(tenant, p.group)) && (await userExists(tenant, p.user))
        ? { uid: uid.group(tenant, p.group), tenant }
        : undefined
    return [
      defineRoute<T, ListQuery>({
        method: 'GET',
        url: base,
        action: 'group.list',
        summary: 'List groups',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          querystring: listQuery(),
          response: { 200: listOf(createGroupSchema) },
        },
        resource: ({ tenant }) => tenantRef(tenant),
        handler: async ({ tenant, query }) => ({
          body: paged(await read(tenant, (d) => listGroups(d, tenant)), query, (g) => g.id),
        }),
      }),
      defineRoute<T, Record<string, never>, { id: string; name: string }>({
        method: 'POST',
        url: base,
        action: 'group.create',
        summary: 'Create a group',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          body: createGroupSchema,
          response: { 201: createGroupSchema },
        },
        resource: async ({ tenant, body }) =>
          (await groupExists(tenant, body.id))
            ? { uid: uid.group(tenant, body.id), tenant }
            : newEntity(tenant, uid.group(tenant, body.id), [uid.tenant(tenant)], {
                name: body.name,
              }),
        handler: async ({ tx, call, tenant, body }) => {
          const { result, events } = await write(tx, (d) => createGroup(d, who(call), tenant, body))
          return {
            status: 201,
            body: result,
            audit: auditOf(events),
            auditResource: audited(uid.group(tenant, result.id)),
          }
        },
      }),
      defineRoute<Member>({
        method: 'PUT',
        url: `${base}/:group/members/:user`,
        action: 'group.update',
        summary: 'Add a user to a group',
        tags: TAGS,
        schema: { params: memberParams },
        resource: memberResource,
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) =>
            addMember(d, who(call), tenant, p.group, p.user),
          )
          return { status: 204, audit: auditOf(events) }
        },
      }),
      defineRoute<Member>({
        method: 'DELETE',
        url: `${base}/:group/members/:user`,
        action: 'group.update',
        summary: 'Remove a user from a group',
        tags: TAGS,
        schema: { params: memberParams },
        resource: memberResource,
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) =>
            removeMember(d, who(call), tenant, p.group, p.user),
          )
          return { status: 204, audit: auditOf(events) }
        },
      }),
    ]
  }

  function serviceAccountRoutes(): AnyApiRoute[] {
    const base = '/tenants/:tenant/service-accounts'
    type Item = T & { client: string }
    type Body = {
      clientId?: string
      name: string
      authMethod?: 'client_secret_basic' | 'private_key_jwt' | 'tls_client_auth'
      jwks?: { keys: Record<string, unknown>[] }
      tlsSubjectDn?: string
    }
    const itemParams = params({ tenant: tenantParam, client: clientId })
    const accountSchema = {
      type: 'object',
      properties: {
        clientId: { type: 'string' },
        name: { type: 'string' },
        authMethod: { type: 'string' },
        grantTypes: { type: 'array', items: { type: 'string' } },
        createdAt: { type: 'string', format: 'date-time' },
      },
    }
    const bodySchema = {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        clientId,
        name: { type: 'string', minLength: 1, maxLength: 200 },
        authMethod: { enum: ['client_secret_basic', 'private_key_jwt', 'tls_client_auth'] },
        jwks: {
          type: 'object',
          additionalProperties: false,
          required: ['keys'],
          properties: { keys: { type: 'array', maxItems: 10, items: { type: 'object' } } },
        },
        tlsSubjectDn: { type: 'string', maxLength: 1024 },
      },
    }
    const view = (c: Client) => ({
      clientId: c.clientId,
      name: c.name,
      authMethod: c.metadata.token_endpoint_auth_method,
      grantTypes: c.metadata.grant_types,
      createdAt: c.createdAt,
    })
    const existing = async ({ tenant, params: p }: { tenant: string; params: Item }) =>
      (await serviceAccountExists(tenant, p.client))
        ? { uid: uid.serviceAccount(tenant, p.client), tenant }
        : undefined
    return [
      defineRoute<T, ListQuery>({
        method: 'GET',
        url: base,
        action: 'serviceaccount.list',
        summary: 'List service accounts',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          querystring: listQuery(),
          response: { 200: listOf(accountSchema) },
        },
        resource: ({ tenant }) => tenantRef(tenant),
        handler: async ({ tenant, query }) => {
          const all = (await listClients(admin, tenant)).filter((c) => c.serviceAccount)
          const p = paged(all, query, (c) => c.clientId)
          return { body: { ...p, items: p.items.map(view) } }
        },
      }),
      defineRoute<T, Record<string, never>, Body & { clientId: string }>({
        method: 'POST',
        url: base,
        action: 'serviceaccount.create',
        summary: 'Create a service account; a client secret is returned once, in this response',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          body: bodySchema,
          response: {
            201: {
              type: 'object',
              properties: { ...accountSchema.properties, clientSecret: { type: 'string' } },
            },
          },
        },
        resource: async ({ tenant, body }) => {
          // The id is fixed here so that the decision and the creation name the same account.
          body.clientId ??= `sa-${randomBytes(8).toString('hex')}`
          return (await serviceAccountExists(tenant, body.clientId))
            ? { uid: uid.serviceAccount(tenant, body.clientId), tenant }
            : newEntity(tenant, uid.serviceAccount(tenant, body.clientId), [uid.tenant(tenant)], {
                name: body.name,
              })
        },
        handler: async ({ tx, call, tenant, body, request }) => {
          refuseIdempotentSecret(request)
          const { result, events } = await write(tx, (d) =>
            createClient(d, who(call), tenant, { ...body, serviceAccount: true }),
          )
          return {
            status: 201,
            body: {
              ...view(result.client),
              ...(result.clientSecret ? { clientSecret: result.clientSecret } : {}),
            },
            headers: { 'cache-control': 'no-store' },
            audit: auditOf(events),
            auditResource: audited(uid.serviceAccount(tenant, result.client.clientId)),
          }
        },
      }),
      defineRoute<Item>({
        method: 'DELETE',
        url: `${base}/:client`,
        action: 'serviceaccount.delete',
        summary: 'Delete a service account (its tokens and bindings go with it)',
        tags: TAGS,
        schema: { params: itemParams },
        resource: existing,
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) => deleteClient(d, who(call), tenant, p.client))
          return { status: 204, audit: auditOf(events) }
        },
      }),
      defineRoute<Item, Record<string, never>, Record<string, never>>({
        method: 'POST',
        url: `${base}/:client/secret`,
        action: 'serviceaccount.update',
        summary: "Rotate a service account's client secret (returned once, in this response)",
        tags: TAGS,
        schema: {
          params: itemParams,
          response: { 200: { type: 'object', properties: { clientSecret: { type: 'string' } } } },
        },
        resource: existing,
        handler: async ({ tx, call, tenant, params: p, request }) => {
          refuseIdempotentSecret(request)
          const { result, events } = await write(tx, (d) =>
            rotateClientSecret(d, who(call), tenant, p.client),
          )
          return {
            body: { clientSecret: result },
            headers: { 'cache-control': 'no-store' },
            audit: auditOf(events),
          }
        },
      }),
    ]
  }

  function sessionRoutes(): AnyApiRoute[] {
    const base = '/tenants/:tenant/sessions'
    type Item = T & { sid: string }
    const sessionSchema = {
      type: 'object',
      properties: {
        id: { type: 'string' },
        userId: { type: 'string' },
        authTime: { type: ['string', 'null'] },
        amr: { type: 'array', items: { type: 'string' } },
        acr: { type: ['string', 'null'] },
        clients: { type: 'array', items: { type: 'string' } },
        expiresAt: { type: ['string', 'null'] },
      },
    }
    return [
      defineRoute<T, ListQuery & { userId?: string }>({
        method: 'GET',
        url: base,
        action: 'session.list',
        summary: 'List active login sessions (optionally of one user)',
        tags: TAGS,
        schema: {
          params: tenantOnly,
          querystring: listQuery({ userId }),
          response: { 200: listOf(sessionSchema) },
        },
        resource: ({ tenant }) => tenantRef(tenant),
        handler: async ({ tenant, query }) => ({
          body: paged(await listSessions(admin, tenant, query.userId), query, (s) => s.id),
        }),
      }),
      defineRoute<Item>({
        method: 'DELETE',
        url: `${base}/:sid`,
        action: 'session.revoke',
        summary: 'Revoke a session (its refresh tokens at once, its access tokens at the gateway)',
        tags: TAGS,
        schema: {
          params: params({ tenant: tenantParam, sid: { type: 'string', pattern: SESSION_ID } }),
        },
        // A session is described per request, inside its user.
        resource: async ({ tenant, params: p }) => {
          const { rows } = await admin.db.query<{ account_id: string }>(
            `SELECT account_id FROM iam.oidc_payloads
              WHERE realm = $1 AND model = 'Session' AND uid = $2 AND account_id IS NOT NULL`,
            [tenant, p.sid],
          )
          const owner = rows[0]?.account_id
          if (!owner) return undefined
          return newEntity(tenant, { type: 'Dflare::Session', id: `${tenant}/${p.sid}` }, [
            uid.user(tenant, owner),
          ])
        },
        handler: async ({ tx, call, tenant, params: p }) => {
          const { events } = await write(tx, (d) => revokeSession(d, who(call), tenant, p.sid))
          return { status: 204, audit: auditOf(events) }
        },
      }),
    ]
  }

  function roleBindingRoutes(): AnyApiRoute[] {
    const base = '/tenants/:tenant/role-bindings'
    type BindingBody = {
      principal: { type: 'User' | 'Group' | 'ServiceAccount'; id: string }
      role: Role
      scope: { type: ScopeType; id?: string }
    }
    const bindingSchema = {
      type: 'object',
      additionalProperties: false,
      required: ['principal', 'role', 'scope'],
      properties: {
        principal: {
          type: 'object',
          additionalProperties: false,
          required: ['type', 'id'],
          properties: {
            type: { enum: ['User', 'Group', 'ServiceAccount'] },
            id: {
              type: 'string',
              minLength: 1,
              maxLength: 128,
              pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$',
            },
          },
        },
        role: { enum: ROLES.filter((r) => r !== 'platform-admin' && r !== 'security-officer') },
        scope: {
          type: 'object',
          additionalProperties: false,
          required: ['type'],
          properties: {
            type: { enum: ['Tenant', 'Domain', 'Project'] },
            id: { type: 'string', pattern: ID.source, description: 'Domain or project id' },
          },
        },
      },
    } as const
    const outSchema = {
      type: 'object',
      properties: {
        principal: {
          type: 'object',
          properties: { type: { type: 'string' }, id: { type: 'string' } },
        },
        role: { type: 'string' },
        scope: { type: 'object', properties: { type: { type: 'string' }, id: { type: 'string' } } },
        createdAt: { type: 'string' },
      },
    }
    // DELETE names the binding in the query string (bodies on DELETE are not dependable).
    type BindingQuery = {
      principalType: BindingBody['principal']['type']
      principal: string
      role: Role
      scopeType: ScopeType
      scopeId?: string
    }
    const bindingQuerySchema = {
      type: 'object',
      additionalProperties: false,
      required: ['principalType', 'principal', 'role', 'scopeType'],
      properties: {
        principalType: bindingSchema.properties.principal.properties.type,
        principal: bindingSchema.properties.principal.properties.id,
        role: bindingSchema.properties.role,
        scopeType: bindingSchema.properties.scope.properties.type,
        scopeId: bindingSchema.properties.scope.properties.id,
      },
    }
    const fromQuery = (q: BindingQuery): BindingBody => ({
      principal: { type: q.principalType, id: q.principal },
      role: q.role,
      scope: { type: q.scopeType, ...(q.scopeId ? { id: q.scopeId } : {}) },
    })
    /** Body ids are local to the tenant; stored ids are tenant-qualified. */
    const qualify = (tenant: string, b: BindingBody): RoleBindingInput => {
      if (b.scope.type !== 'Tenant' && !b.scope.id) fieldMissing('body.scope.id')
      return {
        tenant,
        principal: { type: b.principal.type, id: `${tenant}/${b.principal.id}` },
        role: b.role,
        scope:
          b.scope.type === 'Tenant'
            ? { type: 'Tenant', id: tenant }
            : { type: b.scope.type, id: `${tenant}/${b.scope.id}` },
      }
    }
    const local = (tenant: string, id: string) =>
      id.startsWith(`${tenant}/`) ? id.slice(tenant.length + 1) : id
    const view = (tenant: string, b: RoleBindingInput & { createdAt?: string }) => ({
      principal: { type: b.principal.type, id: local(tenant, b.principal.id) },
      role: b.role,
      scope:
        b.scope.type === 'Tenant'
          ? { type: 'Tenant' }
          : { type: b.scope.type, id: local(tenant, b.scope.id) },
      ...(b.createdAt ? { createdAt: b.createdAt } : {}),
    })
    /** The binding's scope entity, which must exist in the tenant. */
    /** The binding's scope entity, which must exist in the tenant, once the caller may delegate. */
    const scopeResource = async ({
      tenant,
      body,
      principal,
    }: {
      tenant: string
      body: BindingBody
      principal: Principal
    }): Promise<ResourceRef> => {
      const b = qualify(tenant, body)
      let scope: ResourceRef
      if (b.scope.type === 'Tenant') scope = tenantRef(tenant)
      else {
        const local = body.scope.id!
        const found =
          b.scope.type === 'Domain'
            ? await domainExists(tenant, local)
            : await projectExists(tenant, local)
        if (!found) fieldMissing('body.scope.id')
        scope = {
          uid: b.scope.type === 'Domain' ? uid.domain(tenant, local) : uid.project(tenant, local),
          tenant,
        }
      }
      await assertMayDelegate(deps.pdp, principal, b.role, scope, b.scope.type)
      return scope
    }
    return [
      defineRoute<T, ListQuery>({
        method: 'GET',
        url: base,
        action: 'rolebinding.list',
        summary: "List the tenant's role bindings",
        tags: TAGS,
        schema: {
          params: tenantOnly,
          querystring: listQuery(),
          response: { 200: listOf(outSchema) },
        },
        resource: ({ tenant }) => tenantRef(tenant),
        handler: async ({ tenant, query }) => {
          const after = decodeCursor(query.cursor)
          const rows = await listRoleBindings(admin.db, tenant, { after, limit: query.limit + 1 })
          const p = page(rows, query.limit, (r) => r.key)
          return { body: { ...p, items: p.items.map((r) => view(tenant, r)) } }
        },
      }),
      defineRoute<T, Record<string, never>, BindingBody>({
        method: 'POST',
        url: base,
        action: 'rolebinding.create',
        summary:
          'Grant a role to a user, group or service account at the tenant, a domain or a project',
        tags: TAGS,
        schema: { params: tenantOnly, body: bindingSchema, response: { 201: outSchema } },
        resource: scopeResource,
        handler: async ({ tx, tenant, body }) => {
          if (!tx) throw problems.internal()
          const binding = qualify(tenant, body)
          await addRoleBinding(tx, binding)
          const out = view(tenant, binding)
          return { status: 201, body: out, audit: { binding: out } }
        },
      }),
      defineRoute<T, BindingQuery>({
        method: 'DELETE',
        url: base,
        action: 'rolebinding.delete',
        summary: 'Remove a role binding (named in the query string)',
        tags: TAGS,
        schema: { params: tenantOnly, querystring: bindingQuerySchema },
        resource: ({ tenant, query, principal }) =>
          scopeResource({ tenant, body: fromQuery(query), principal }),
        handler: async ({ tx, tenant, query }) => {
          if (!tx) throw problems.internal()
          const binding = qualify(tenant, fromQuery(query))
          if (!(await removeRoleBinding(tx, binding)))
            throw problems.notFound('No such role binding')
          return { status: 204, audit: { binding: view(tenant, binding) } }
        },
      }),
    ]
  }
}
