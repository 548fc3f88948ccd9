/**
 * Policy administration API (`/api/v1/tenants/:tenant/policies…`), declared as gateway routes so
 * every call is authenticated, authorized (`policy.*` actions) and audited by the gateway.
 * The tenant's policy set is the resource `Dflare::Policy::"<tenant>/policies"` in its Tenant.
 */
import { PROBLEM_BASE, Problem, problems } from '../core/errors.ts'
import { type AnyApiRoute, defineRoute, type ResourceRef } from '../gateway/route.ts'
import { PolicyTextError } from './cedar/parse.ts'
import type { AuthorizationRequest } from './contract.ts'
import { DECISIONS_ACTION, decisionsBodySchema, handleDecisions } from './routes.ts'
import { NAMESPACE } from './schema.ts'
import type { AuthzService } from './service.ts'

const MAX_TEXT = 256 * 1024

export function policySetResource(tenant: string): ResourceRef {
  const uid = { type: `${NAMESPACE}::Policy`, id: `${tenant}/policies` }
  return {
    uid,
    tenant,
    // Never stored: described per request, inside its tenant.
    entities: [{ uid, tenant, attrs: {}, parents: [{ type: `${NAMESPACE}::Tenant`, id: tenant }] }],
  }
}

const tenantResource = (tenant: string): ResourceRef => ({
  uid: { type: `${NAMESPACE}::Tenant`, id: tenant },
  tenant,
})

/** 422 with every problem (line, column, policy) in `errors`. */
export function invalidPolicies(err: PolicyTextError): Problem {
  return new Problem({
    status: 422,
    title: 'Invalid policies',
    type: `${PROBLEM_BASE}invalid-policies`,
    detail: `${err.problems.length} problem(s) in the policy text`,
    extensions: { errors: err.problems },
  })
}

function rethrow(err: unknown): never {
  if (err instanceof PolicyTextError) throw invalidPolicies(err)
  throw err
}

const textBody = {
  type: 'object',
  required: ['text'],
  additionalProperties: false,
  properties: {
    text: { type: 'string', maxLength: MAX_TEXT },
    comment: { type: 'string', maxLength: 1000 },
  },
}
const versionParams = {
  type: 'object',
  required: ['tenant', 'version'],
  properties: { tenant: { type: 'string' }, version: { type: 'integer', minimum: 1 } },
}

type TextBody = { text: string; comment?: string }

type DecisionsBody = AuthorizationRequest | { requests: AuthorizationRequest[] }

/**
 * `POST /api/v1/authz/decisions` as a gateway route (authenticated, authorized as the
 * platform-only action `authz.decide` on the platform tenant, audited). Mount either this or the
 * bare `authzRoutes` plugin, not both.
 */
export function decisionsApiRoute(service: AuthzService): AnyApiRoute {
  return defineRoute<Record<string, string>, Record<string, unknown>, DecisionsBody>({
    method: 'POST',
    url: '/authz/decisions',
    action: DECISIONS_ACTION,
    summary: 'Authorization decisions (batch capable)',
    tags: ['authz'],
    schema: { body: decisionsBodySchema as Record<string, unknown> },
    write: false,
    resource: () => tenantResource('platform'),
    handler: async ({ body }) => ({ body: await handleDecisions(service.pdp, body) }),
  })
}

export function authzApiRoutes(service: AuthzService): AnyApiRoute[] {
  return [
    decisionsApiRoute(service),
    defineRoute<{ tenant: string }>({
      method: 'GET',
      url: '/tenants/:tenant/policies',
      action: 'policy.list',
      summary: "List the tenant's policy versions",
      tags: ['authz'],
      resource: ({ tenant }) => tenantResource(tenant),
      handler: async ({ tenant }) => ({ body: { versions: await service.admin.versions(tenant) } }),
    }),
    defineRoute<{ tenant: string; version: number }>({
      method: 'GET',
      url: '/tenants/:tenant/policies/:version',
      action: 'policy.read',
      summary: 'Read one policy version',
      tags: ['authz'],
      schema: { params: versionParams },
      resource: ({ tenant }) => policySetResource(tenant),
      handler: async ({ tenant, params }) => ({
        body: { version: params.version, text: await service.admin.text(tenant, params.version) },
      }),
    }),
    defineRoute<{ tenant: string }, Record<string, unknown>, TextBody>({
      method: 'POST',
      url: '/tenants/:tenant/policies',
      action: 'policy.update',
      summary: 'Publish and activate a new policy version',
      tags: ['authz'],
      schema: { body: textBody },
      resource: ({ tenant }) => policySetResource(tenant),
      handler: async ({ tenant, body, tx, call }) => {
        if (!tx) throw problems.internal()
        const version = await service.admin
          .publish(tx, { tenant, text: body.text, author: call.actor.id, comment: body.comment })
          .catch(rethrow)
        return { status: 201, body: { version }, audit: { version } }
      },
    }),
    defineRoute<{ tenant: string; version: number }>({
      method: 'POST',
      url: '/tenants/:tenant/policies/:version/activate',
      action: 'policy.update',
      summary: 'Roll back (or forward) to an existing version',
      tags: ['authz'],
      schema: { params: versionParams },
      resource: ({ tenant }) => policySetResource(tenant),
      handler: async ({ tenant, params, tx }) => {
        if (!tx) throw problems.internal()
        await service.admin.rollback(tx, tenant, params.version)
        return { body: { active: params.version }, audit: { version: params.version } }
      },
    }),
    defineRoute<{ tenant: string }, Record<string, unknown>, TextBody>({
      method: 'POST',
      url: '/tenants/:tenant/policies/dry-run',
      action: 'policy.dryrun',
      summary: 'Validate a candidate version and replay recent requests against it',
      tags: ['authz'],
      schema: { body: textBody },
      write: false,
      resource: ({ tenant }) => policySetResource(tenant),
      handler: async ({ tenant, body }) => ({
        body: await service.dryRun(tenant, body.text).catch(rethrow),
      }),
    }),
  ]
}
