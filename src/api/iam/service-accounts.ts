import { randomBytes } from 'node:crypto'
import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import {
  type Client,
  createClient,
  deleteClient,
  listClients,
  rotateClientSecret,
} from '../../iam/admin/clients.ts'
import { uid } from '../../iam/admin/context.ts'
import { page } from '../pagination.ts'
import { tenantParam } from '../schemas.ts'
import {
  audited,
  auditOf,
  clientId,
  type IdentityContext,
  keyset,
  type ListQuery,
  listOf,
  listQuery,
  newEntity,
  params,
  refuseIdempotentSecret,
  type T,
  TAGS,
  tenantOnly,
  tenantRef,
  who,
} from './common.ts'

export function serviceAccountRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { admin, write, serviceAccountExists } = ctx
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
        const rows = await listClients(admin, tenant, { serviceAccounts: true, ...keyset(query) })
        const p = page(rows, query.limit, (c) => c.clientId)
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
