/**
 * `POST /api/v1/authz/decisions`: batch-capable decision API for components and operators.
 * Authentication and the authorization of the call itself (action `authz.decide`, a
 * platform-only action) belong to the gateway's hook; this plugin only declares them.
 */
import type { AuthorizationRequest, Decision } from './contract.ts'
import type { BatchPdp } from './pdp.ts'

export const DECISIONS_PATH = '/api/v1/authz/decisions'
/** The Cedar action the gateway must authorize before this route runs. */
export const DECISIONS_ACTION = 'authz.decide'
export const MAX_BATCH = 100

const uidSchema = {
  type: 'object',
  required: ['type', 'id'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', minLength: 1, maxLength: 200 },
    id: { type: 'string', minLength: 1, maxLength: 512 },
  },
} as const

const entitySchema = {
  type: 'object',
  required: ['uid', 'tenant'],
  additionalProperties: false,
  properties: {
    uid: uidSchema,
    tenant: { type: 'string', minLength: 1, maxLength: 200 },
    attrs: { type: 'object' },
    parents: { type: 'array', maxItems: 32, items: uidSchema },
    tags: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const

export const authorizationRequestSchema = {
  type: 'object',
  required: ['principal', 'action', 'resource'],
  additionalProperties: false,
  properties: {
    principal: uidSchema,
    action: uidSchema,
    resource: uidSchema,
    context: { type: 'object' },
    entities: { type: 'array', maxItems: 16, items: entitySchema },
  },
} as const

/** Body: one request, or `{ requests: [...] }` (1..100) for a batch. */
export const decisionsBodySchema = {
  oneOf: [
    authorizationRequestSchema,
    {
      type: 'object',
      required: ['requests'],
      additionalProperties: false,
      properties: {
        requests: {
          type: 'array',
          minItems: 1,
          maxItems: MAX_BATCH,
          items: authorizationRequestSchema,
        },
      },
    },
  ],
} as const

const decisionSchema = {
  type: 'object',
  required: ['decision', 'determining', 'errors', 'reason'],
  properties: {
    decision: { type: 'string', enum: ['allow', 'deny'] },
    determining: { type: 'array', items: { type: 'string' } },
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: { policy: { type: 'string' }, message: { type: 'string' } },
      },
    },
    reason: { type: 'string' },
  },
} as const

export const decisionsResponseSchema = {
  200: {
    oneOf: [
      decisionSchema,
      {
        type: 'object',
        required: ['decisions'],
        properties: { decisions: { type: 'array', items: decisionSchema } },
      },
    ],
  },
} as const

type Body = AuthorizationRequest | { requests: AuthorizationRequest[] }

/** The handler alone, for callers that mount it themselves. */
export async function handleDecisions(
  pdp: BatchPdp,
  body: Body,
): Promise<Decision | { decisions: Decision[] }> {
  if ('requests' in body) return { decisions: await pdp.decideBatch(body.requests) }
  return pdp.decide({ ...body, context: body.context ?? {} })
}
