import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import { uid } from '../../iam/admin/context.ts'
import {
  createDomain,
  createDomainSchema,
  deleteDomain,
  listDomains,
} from '../../iam/admin/directory.ts'
import { page } from '../pagination.ts'
import { tenantParam } from '../schemas.ts'
import {
  audited,
  auditOf,
  type IdentityContext,
  itemId,
  keyset,
  type ListQuery,
  listOf,
  listQuery,
  newEntity,
  params,
  type T,
  TAGS,
  tenantOnly,
  tenantRef,
  who,
} from './common.ts'

export function domainRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { read, write, domainExists } = ctx
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
        body: page(
          await read(tenant, (d) => listDomains(d, tenant, keyset(query))),
          query.limit,
          (r) => r.id,
        ),
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
        const { result, events } = await write(tx, (d) => createDomain(d, who(call), tenant, body))
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
