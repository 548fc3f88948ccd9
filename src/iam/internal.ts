import type { FastifyInstance } from 'fastify'
import type { Db } from '../core/db/index.ts'
import type { InternalApi } from '../server/component.ts'
import type { IamService } from './service.ts'
import { TokenRejected } from './verify.ts'

/**
 * What other processes need from identity (`dflare serve`), on the internal mutual-TLS
 * listener under /internal/v1/iam: the issuer base, access-token verification (signature,
 * issuer, audience, lifetime, revocation: everything IamService.verifyAccessToken checks),
 * realm and project existence. Only the gateway and isolation may call.
 */
export const IAM_CALLERS = ['gateway', 'isolation'] as const

const NAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' } as const

export async function projectExists(db: Db, realm: string, project: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM iam.projects WHERE realm = $1 AND id = $2', [
    realm,
    project,
  ])
  return rows.length === 1
}

export function iamInternalApi(deps: { service: IamService; db: Db }): InternalApi {
  const { service } = deps
  return {
    component: 'iam',
    callers: IAM_CALLERS,
    routes(app: FastifyInstance) {
      app.get('/issuer', async () => ({
        origin: new URL(service.issuer('platform')).origin,
        apiAudience: service.apiAudience,
      }))
      app.post(
        '/tokens/verify',
        {
          schema: {
            body: {
              type: 'object',
              required: ['token', 'realm'],
              additionalProperties: false,
              properties: { token: { type: 'string', maxLength: 16_384 }, realm: NAME },
            },
          },
        },
        async (request, reply) => {
          const { token, realm } = request.body as { token: string; realm: string }
          try {
            const claims = await service.verifyAccessToken(token, realm)
            return { claims, maxAccessTokenTtl: await service.maxAccessTokenTtl(realm) }
          } catch (err) {
            if (err instanceof TokenRejected)
              return reply.code(401).send({ error: 'invalid_token', reason: err.reason })
            throw err
          }
        },
      )
      app.get(
        '/realms/:realm',
        { schema: { params: { type: 'object', properties: { realm: NAME } } } },
        async (request) => {
          const { realm } = request.params as { realm: string }
          const exists = await service.realmExists(realm)
          return {
            exists,
            ...(exists ? { maxAccessTokenTtl: await service.maxAccessTokenTtl(realm) } : {}),
          }
        },
      )
      app.get(
        '/realms/:realm/projects/:project',
        {
          schema: {
            params: { type: 'object', properties: { realm: NAME, project: NAME } },
          },
        },
        async (request) => {
          const { realm, project } = request.params as { realm: string; project: string }
          return { exists: await projectExists(deps.db, realm, project) }
        },
      )
    },
  }
}
