import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import { uid } from '../../iam/admin/context.ts'
import { listSessions, revokeSession } from '../../iam/admin/sessions.ts'
import { page } from '../pagination.ts'
import { tenantParam } from '../schemas.ts'
import {
  auditOf,
  type IdentityContext,
  keyset,
  type ListQuery,
  listOf,
  listQuery,
  newEntity,
  params,
  SESSION_ID,
  type T,
  TAGS,
  tenantOnly,
  tenantRef,
  userId,
  who,
} from './common.ts'

export function sessionRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { admin, write } = ctx
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
      handler: async ({ tenant, query }) => {
        const rows = await listSessions(admin, tenant, {
          userId: query.userId,
          ...keyset(query),
        })
        return { body: page(rows, query.limit, (s) => s.id) }
      },
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
