import swagger from '@fastify/swagger'
import type { FastifyInstance } from 'fastify'
import { VERSION } from '../core/version.ts'
import { API_PREFIX } from '../gateway/pipeline.ts'

export const OPENAPI_PATH = '/api/openapi.json'

/**
 * OpenAPI 3.1 generated from the same route schemas that validate requests. Register before any
 * API route (the generator collects routes as they are added); serve with `openApiRoute`.
 */
export async function registerOpenApi(app: FastifyInstance, publicUrl: URL) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Dflare platform API',
        version: VERSION,
        description:
          'Every operation is authenticated (bearer access token or mTLS service identity), authorized by the policy decision point and audited. Errors are application/problem+json (RFC 9457).',
      },
      servers: [{ url: publicUrl.origin }],
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
    },
    // Only the platform API is documented here; OIDC has its own discovery documents.
    transform: ({ schema, url }) => ({
      schema: url.startsWith(API_PREFIX) ? schema : { ...schema, hide: true },
      url,
    }),
  })
}

export function openApiRoute(app: FastifyInstance) {
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger())
}
