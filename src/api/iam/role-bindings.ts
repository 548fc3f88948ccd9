import { ROLES, type Role, type ScopeType } from '../../authz/schema.ts'
import {
  addRoleBinding,
  listRoleBindings,
  type RoleBindingInput,
  removeRoleBinding,
} from '../../authz/writer.ts'
import { problems } from '../../core/errors.ts'
import type { Principal } from '../../gateway/principal.ts'
import { type AnyApiRoute, defineRoute, type ResourceRef } from '../../gateway/route.ts'
import { ID, uid } from '../../iam/admin/context.ts'
import { assertMayDelegate } from '../delegation.ts'
import { page } from '../pagination.ts'
import {
  fieldMissing,
  type IdentityContext,
  keyset,
  type ListQuery,
  listOf,
  listQuery,
  type T,
  TAGS,
  tenantOnly,
  tenantRef,
} from './common.ts'

export function roleBindingRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { admin, deps, domainExists, projectExists } = ctx
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
        const rows = await listRoleBindings(admin.db, tenant, keyset(query))
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
        if (!(await removeRoleBinding(tx, binding))) throw problems.notFound('No such role binding')
        return { status: 204, audit: { binding: view(tenant, binding) } }
      },
    }),
  ]
}
