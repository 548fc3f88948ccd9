import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import { uid } from '../../iam/admin/context.ts'
import {
  addMember,
  createGroup,
  createGroupSchema,
  listGroups,
  removeMember,
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
  userId,
  who,
} from './common.ts'

export function groupRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { read, write, groupExists, userExists } = ctx
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
        body: page(
          await read(tenant, (d) => listGroups(d, tenant, keyset(query))),
          query.limit,
          (g) => g.id,
        ),
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
        const { events } = await write(tx, (d) => addMember(d, who(call), tenant, p.group, p.user))
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
