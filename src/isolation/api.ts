import { problems } from '../core/errors.ts'
import { authorizationRequest } from '../gateway/cedar-request.ts'
import {
  type AnyApiRoute,
  defineRoute,
  type HandlerContext,
  type ResourceRef,
} from '../gateway/route.ts'
import { type Caller, type IsolationService, specEntity } from './service.ts'

const tenantParams = {
  type: 'object',
  required: ['tenant'],
  properties: { tenant: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,30}[a-z0-9]$' } },
} as const

/** The tenant's spec as a Cedar resource, inside its Tenant (same as the service asks for). */
export function specResource(tenant: string): ResourceRef {
  const entity = specEntity(tenant)
  return { uid: entity.uid, tenant, entities: [entity] }
}

/** The gateway's authenticated principal as the service's caller, with the same Cedar context. */
function callerOf(ctx: HandlerContext<unknown, unknown, unknown>, action: string): Caller {
  const req = authorizationRequest(ctx.principal, action, ctx.resource, ctx.call.sourceIp)
  return {
    principal: ctx.principal.uid,
    realm: ctx.principal.realm,
    actor: ctx.call.actor,
    correlationId: ctx.call.correlationId,
    context: req.context,
  }
}

type P = { tenant: string }
type ApplyBody = { spec?: unknown; version?: number; planHash?: string }

/**
 * The isolation API as gateway routes (authenticated, authorized as `tenantspec.*`, audited).
 * The service authorizes again and records its own events in the transactions that change
 * state; an apply runs steps after its first commit, so the routes are not gateway-transactional.
 */
export function isolationApiRoutes(service: IsolationService): AnyApiRoute[] {
  const base = '/tenants/:tenant/isolation'
  const tags = ['isolation']
  const resource = ({ params }: { params: P }) => specResource(params.tenant)
  return [
    defineRoute<P, unknown, unknown>({
      method: 'PUT',
      url: `${base}/spec`,
      action: 'tenantspec.apply',
      summary: 'Store the tenant isolation spec as its next version',
      tags,
      write: false,
      schema: { params: tenantParams, body: { type: 'object' } },
      resource,
      async handler(ctx) {
        const r = await service.putSpec(
          callerOf(ctx, 'tenantspec.apply'),
          ctx.params.tenant,
          ctx.body,
        )
        return { status: r.created ? 201 : 200, body: r, audit: { specVersion: r.version } }
      },
    }),
    defineRoute<P, { version?: number }, unknown>({
      method: 'GET',
      url: `${base}/spec`,
      action: 'tenantspec.read',
      summary: 'Read the tenant isolation spec (latest or a version)',
      tags,
      schema: {
        params: tenantParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { version: { type: 'integer', minimum: 1 } },
        },
      },
      resource,
      async handler(ctx) {
        const caller = callerOf(ctx, 'tenantspec.read')
        return { body: await service.getSpec(caller, ctx.params.tenant, ctx.query.version) }
      },
    }),
    defineRoute<P, unknown, { spec?: unknown } | undefined>({
      method: 'POST',
      url: `${base}/plan`,
      action: 'tenantspec.plan',
      summary: 'Plan the tenant isolation: per layer what would be created, changed or removed',
      tags,
      write: false,
      schema: { params: tenantParams },
      resource,
      async handler(ctx) {
        const plan = await service.plan(callerOf(ctx, 'tenantspec.plan'), ctx.params.tenant, {
          spec: ctx.body?.spec,
        })
        return { body: plan, audit: { planHash: plan.hash } }
      },
    }),
    defineRoute<P, unknown, ApplyBody | undefined>({
      method: 'POST',
      url: `${base}/apply`,
      action: 'tenantspec.apply',
      summary: 'Apply the tenant isolation spec on every layer (idempotent, resumable)',
      tags,
      write: false,
      schema: {
        params: tenantParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            spec: { type: 'object' },
            version: { type: 'integer', minimum: 1 },
            planHash: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          },
        },
      },
      resource,
      async handler(ctx) {
        const b = ctx.body ?? {}
        if (b.spec !== undefined && b.version !== undefined)
          throw problems.badRequest('Give either spec or version, not both')
        const res = await service.apply(callerOf(ctx, 'tenantspec.apply'), ctx.params.tenant, b)
        return { body: res, audit: { planHash: res.plan.hash, runId: res.runId } }
      },
    }),
    defineRoute<P, unknown, unknown>({
      method: 'POST',
      url: `${base}/destroy`,
      action: 'tenantspec.destroy',
      summary: 'Remove the tenant isolation on every layer; numbers and names go into quarantine',
      tags,
      write: false,
      schema: { params: tenantParams },
      resource,
      async handler(ctx) {
        const res = await service.destroy(callerOf(ctx, 'tenantspec.destroy'), ctx.params.tenant)
        return { body: res, audit: { planHash: res.plan.hash, runId: res.runId } }
      },
    }),
    defineRoute<Record<string, never>, unknown, unknown>({
      method: 'GET',
      url: '/isolation/verify',
      action: 'tenantspec.read',
      summary: 'Verify tenant isolation across all tenants',
      tags,
      resource: () => specResource('platform'),
      async handler(ctx) {
        const report = await service.verify(callerOf(ctx, 'tenantspec.read'))
        return { body: report, audit: { ok: report.ok, violations: report.violations.length } }
      },
    }),
  ]
}
