import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Problem, problems } from '../core/errors.ts'
import type { Caller, IsolationService } from './service.ts'

export interface IsolationRouteDeps {
  service: IsolationService
  /** The authenticated caller of a request, as established by the gateway. */
  callerOf: (req: FastifyRequest) => Caller
}

type TenantParams = { Params: { tenant: string } }

function body(req: FastifyRequest): Record<string, unknown> {
  const b = req.body
  if (b === undefined || b === null || b === '') return {}
  if (typeof b === 'object' && !Array.isArray(b)) return b as Record<string, unknown>
  throw problems.badRequest('The request body must be a JSON object')
}

/**
 * Tenant isolation API (operator only; every call is also authorized by the service):
 * PUT/GET  /api/v1/isolation/tenants/:tenant/spec      (JSON, or YAML as application/yaml)
 * POST     /api/v1/isolation/tenants/:tenant/plan      {spec?}
 * POST     /api/v1/isolation/tenants/:tenant/apply     {spec?, version?, planHash?}
 * POST     /api/v1/isolation/tenants/:tenant/destroy
 * GET      /api/v1/isolation/verify
 */
export async function isolationRoutes(app: FastifyInstance, deps: IsolationRouteDeps) {
  const { service, callerOf } = deps
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      ['application/yaml', 'application/x-yaml', 'text/yaml'],
      { parseAs: 'string' },
      (_req, text, done) => done(null, text),
    )
    scope.setErrorHandler((err, req, reply) => {
      const p =
        err instanceof Problem
          ? err
          : (err as { statusCode?: number }).statusCode === 400
            ? problems.badRequest('The request body is not valid')
            : problems.internal()
      if (!(err instanceof Problem) && p.status === 500)
        req.log.error({ err }, 'isolation route failed')
      reply
        .code(p.status)
        .headers(p.headers)
        .type('application/problem+json')
        .send(p.toJSON(req.url))
    })

    const base = '/api/v1/isolation/tenants/:tenant'
    scope.put<TenantParams>(`${base}/spec`, async (req, reply) => {
      const input = typeof req.body === 'string' ? req.body : body(req)
      const res = await service.putSpec(callerOf(req), req.params.tenant, input)
      return reply.code(res.created ? 201 : 200).send(res)
    })
    scope.get<TenantParams & { Querystring: { version?: string } }>(`${base}/spec`, async (req) => {
      const v = req.query.version
      if (v !== undefined && !/^[1-9]\d{0,8}$/.test(v))
        throw problems.badRequest('version must be a positive integer')
      return service.getSpec(callerOf(req), req.params.tenant, v ? Number(v) : undefined)
    })
    scope.post<TenantParams>(`${base}/plan`, async (req) => {
      const b = body(req)
      return service.plan(callerOf(req), req.params.tenant, { spec: b.spec })
    })
    scope.post<TenantParams>(`${base}/apply`, async (req) => {
      const b = body(req)
      if (b.version !== undefined && !(Number.isInteger(b.version) && (b.version as number) > 0))
        throw problems.badRequest('version must be a positive integer')
      if (
        b.planHash !== undefined &&
        !(typeof b.planHash === 'string' && /^[0-9a-f]{64}$/.test(b.planHash))
      )
        throw problems.badRequest('planHash must be a SHA-256 hex digest')
      return service.apply(callerOf(req), req.params.tenant, {
        spec: b.spec,
        version: b.version as number | undefined,
        planHash: b.planHash as string | undefined,
      })
    })
    scope.post<TenantParams>(`${base}/destroy`, async (req) =>
      service.destroy(callerOf(req), req.params.tenant),
    )
    scope.get('/api/v1/isolation/verify', async (req) => service.verify(callerOf(req)))
  })
}
