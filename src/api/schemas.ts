/** JSON Schemas shared by API routes (the same ones validate input and document OpenAPI). */
export const ID = '^[a-z0-9][a-z0-9-]{0,62}$'

export const tenantParam = {
  type: 'string',
  pattern: ID,
  description: 'Tenant (realm) id',
} as const
export const idParam = { type: 'string', pattern: ID } as const

export const labels = {
  type: 'object',
  maxProperties: 64,
  propertyNames: { pattern: '^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$' },
  additionalProperties: { type: 'string', maxLength: 63 },
} as const

export const problem = {
  type: 'object',
  description: 'RFC 9457 problem details',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    correlation_id: { type: 'string' },
  },
} as const
