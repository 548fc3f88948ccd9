import type { FastifyInstance } from 'fastify'
import type { InternalApi } from '../server/component.ts'
import type { AuthorizationRequest, Pdp } from './contract.ts'

/**
 * The PDP for components in other processes (`dflare serve`): `POST /internal/v1/authz/decide`
 * on the internal mutual-TLS listener, admitting only the components that enforce policy.
 */
export const AUTHZ_CALLERS = ['gateway', 'isolation'] as const

const uid = {
  type: 'object',
  required: ['type', 'id'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', minLength: 1, maxLength: 256 },
    id: { type: 'string', minLength: 1, maxLength: 1024 },
  },
} as const

export const decideSchema = {
  type: 'object',
  required: ['principal', 'action', 'resource', 'context'],
  additionalProperties: false,
  properties: {
    principal: uid,
    action: uid,
    resource: uid,
    context: { type: 'object' },
    entities: {
      type: 'array',
      maxItems: 1000,
      items: {
        type: 'object',
        required: ['uid', 'tenant'],
        additionalProperties: false,
        properties: {
          uid,
          tenant: { type: 'string', minLength: 1, maxLength: 256 },
          attrs: { type: 'object' },
          parents: { type: 'array', maxItems: 1000, items: uid },
          tags: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
    },
  },
} as const

export function authzInternalApi(pdp: Pdp): InternalApi {
  return {
    component: 'authz',
    callers: AUTHZ_CALLERS,
    routes(app: FastifyInstance) {
      app.post('/decide', { schema: { body: decideSchema } }, async (request) => {
        const body = request.body as AuthorizationRequest
        return pdp.decide({
          ...body,
          entities: body.entities?.map((e) => ({
            ...e,
            attrs: e.attrs ?? {},
            parents: e.parents ?? [],
          })),
        })
      })
    },
  }
}
