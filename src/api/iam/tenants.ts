import { problems } from '../../core/errors.ts'
import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import { uid } from '../../iam/admin/context.ts'
import {
  createRealm,
  createRealmSchema,
  getRealm,
  listRealms,
  realmSchema,
  updateRealm,
  updateRealmSchema,
} from '../../iam/admin/realms.ts'
import { page } from '../pagination.ts'
import {
  audited,
  auditOf,
  type IdentityContext,
  keyset,
  type ListQuery,
  listOf,
  listQuery,
  newEntity,
  PLATFORM,
  type T,
  TAGS,
  tenantOnly,
  tenantRef,
  who,
} from './common.ts'

export function tenantRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { admin, read, exists, write } = ctx
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
      handler: async ({ query }) => {
        const rows = await listRealms(admin, keyset(query))
        return { body: page(rows, query.limit, (r) => r.id) }
      },
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
