import type { EntityUid } from '../../authz/contract.ts'
import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import { NAMESPACE, uid } from '../../iam/admin/context.ts'
import {
  deleteWebAuthnCredential,
  getWebAuthnCredential,
  listWebAuthnCredentials,
  webauthnCredentialSchema,
} from '../../iam/admin/webauthn.ts'
import { tenantParam } from '../schemas.ts'
import {
  auditOf,
  type IdentityContext,
  type ListQuery,
  listOf,
  listQuery,
  newEntity,
  paged,
  params,
  type T,
  TAGS,
  UUID,
  userId,
  who,
} from './common.ts'

/**
 * A user's WebAuthn credentials (passkeys): listed, read and removed by administrators. Users
 * manage their own on the realm's account page. Public keys and credential ids never leave iam.
 */
export function webauthnCredentialRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { read, exists, write, userExists } = ctx
  const base = '/tenants/:tenant/users/:user/webauthn-credentials'
  type Owner = T & { user: string }
  type Item = Owner & { credential: string }
  const credentialUid = (tenant: string, id: string): EntityUid => ({
    type: `${NAMESPACE}::WebAuthnCredential`,
    id: `${tenant}/${id}`,
  })
  // A credential is described per request, inside its user (like a session).
  const existing = async ({ tenant, params: p }: { tenant: string; params: Item }) =>
    (await exists(
      tenant,
      'SELECT 1 FROM iam.webauthn_credentials WHERE realm = $1 AND user_id = $2 AND id = $3',
      [tenant, p.user, p.credential],
    ))
      ? newEntity(tenant, credentialUid(tenant, p.credential), [uid.user(tenant, p.user)])
      : undefined
  const itemParams = params({
    tenant: tenantParam,
    user: userId,
    credential: { type: 'string', pattern: UUID },
  })
  return [
    defineRoute<Owner, ListQuery>({
      method: 'GET',
      url: base,
      action: 'webauthncredential.list',
      summary: "List a user's WebAuthn credentials (passkeys), without key material",
      tags: TAGS,
      schema: {
        params: params({ tenant: tenantParam, user: userId }),
        querystring: listQuery(),
        response: { 200: listOf(webauthnCredentialSchema) },
      },
      resource: async ({ tenant, params: p }) =>
        (await userExists(tenant, p.user)) ? { uid: uid.user(tenant, p.user), tenant } : undefined,
      handler: async ({ tenant, params: p, query }) => ({
        body: paged(
          await read(tenant, (d) => listWebAuthnCredentials(d, tenant, p.user)),
          query,
          (c) => `${c.createdAt}/${c.id}`,
        ),
      }),
    }),
    defineRoute<Item>({
      method: 'GET',
      url: `${base}/:credential`,
      action: 'webauthncredential.read',
      summary: "Read one of a user's WebAuthn credentials",
      tags: TAGS,
      schema: { params: itemParams, response: { 200: webauthnCredentialSchema } },
      resource: existing,
      handler: async ({ tenant, params: p }) => ({
        body: await read(tenant, (d) => getWebAuthnCredential(d, tenant, p.user, p.credential)),
      }),
    }),
    defineRoute<Item>({
      method: 'DELETE',
      url: `${base}/:credential`,
      action: 'webauthncredential.delete',
      summary: "Remove a user's WebAuthn credential (e.g. a lost authenticator)",
      tags: TAGS,
      schema: { params: itemParams },
      resource: existing,
      handler: async ({ tx, call, tenant, params: p }) => {
        const { events } = await write(tx, (d) =>
          deleteWebAuthnCredential(d, who(call), tenant, p.user, p.credential),
        )
        return { status: 204, audit: auditOf(events) }
      },
    }),
  ]
}
