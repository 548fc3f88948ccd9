import { randomUUID } from 'node:crypto'
import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import { uid } from '../../iam/admin/context.ts'
import {
  createUser,
  createUserSchema,
  deleteUser,
  getUser,
  listUsers,
  unlockUser,
  updateUser,
  userSchema,
} from '../../iam/admin/users.ts'
import { page } from '../pagination.ts'
import { tenantParam } from '../schemas.ts'
import {
  audited,
  auditOf,
  fieldMissing,
  type IdentityContext,
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

export function userRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { read, write, domainExists, userExists } = ctx
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
    defineRoute<T, ListQuery & { username_prefix?: string }>({
      method: 'GET',
      url: base,
      action: 'user.list',
      summary: 'List users',
      tags: TAGS,
      schema: {
        params: tenantOnly,
        querystring: listQuery({
          username_prefix: {
            type: 'string',
            minLength: 1,
            maxLength: 128,
            pattern: '^[A-Za-z0-9._@-]+$',
          },
        }),
        response: { 200: listOf(userSchema) },
      },
      resource: ({ tenant }) => tenantRef(tenant),
      handler: async ({ tenant, query }) => {
        const rows = await read(tenant, (d) =>
          listUsers(d, tenant, {
            ...keyset(query),
            prefix: query.username_prefix,
          }),
        )
        return { body: page(rows, query.limit, (u) => u.username) }
      },
    }),
    defineRoute<T, Record<string, never>, Record<string, unknown> & { domainId?: string }>({
      method: 'POST',
      url: base,
      action: 'user.create',
      summary: 'Create a user (optionally in a domain, optionally with an initial password)',
      tags: TAGS,
      schema: { params: tenantOnly, body: createUserSchema, response: { 201: userSchema } },
      // The user's id is made at creation: the decision is on a request-scoped entity for the
      // user-to-be, placed where the user will sit (its domain, else the tenant).
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
