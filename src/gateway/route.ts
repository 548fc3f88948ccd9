import type { FastifyRequest, HTTPMethods } from 'fastify'
import type { EntityRecord, EntityUid } from '../authz/contract.ts'
import type { Transaction } from '../core/db/index.ts'
import type { Actor } from '../core/events.ts'
import type { Principal } from './principal.ts'

/** The resource an API call acts on, found before authorization. */
export interface ResourceRef {
  uid: EntityUid
  /** Tenant that owns it. */
  tenant: string
  /** Request-scoped entities (e.g. the resource being created, with its parents). */
  entities?: EntityRecord[]
}

/** Who acted, for domain functions that write events or records. */
export interface CallContext {
  actor: Actor
  correlationId: string
  sourceIp: string
  userAgent?: string
}

export interface HandlerContext<P, Q, B> {
  request: FastifyRequest
  params: P
  query: Q
  body: B
  principal: Principal
  /** Tenant named in the path (`platform` for platform-level routes). */
  tenant: string
  resource: ResourceRef
  call: CallContext
  /**
   * For writes: the transaction the state change must use. The gateway records the request's
   * audit event in it after the handler returns, so both commit or neither does.
   */
  tx: Transaction | undefined
}

export interface ApiResult {
  status?: number
  body?: unknown
  headers?: Record<string, string>
  /** Extra, secret-free detail for the request's audit event. */
  audit?: Record<string, unknown>
  /** Overrides the audited resource (e.g. the id a create produced). */
  auditResource?: { type: string; id: string }
}

export interface JsonSchema {
  [k: string]: unknown
}

/**
 * One platform API operation. Every route under /api/v1 is declared this way: the gateway refuses
 * to start if a route lacks an action, so nothing can be served without authentication,
 * authorization and audit.
 */
export interface ApiRoute<P = Record<string, string>, Q = Record<string, unknown>, B = unknown> {
  method: Extract<HTTPMethods, 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'>
  /** Path below /api/v1, e.g. `/tenants/:tenant/projects/:project`. */
  url: string
  /** Cedar action id, e.g. `project.read`. */
  action: string
  summary: string
  tags?: string[]
  schema?: {
    params?: JsonSchema
    querystring?: JsonSchema
    body?: JsonSchema
    response?: Record<number, JsonSchema>
  }
  /** Finds the resource; undefined answers 404. Must only read, with the tenant from the path. */
  resource(ctx: {
    params: P
    query: Q
    body: B
    tenant: string
    principal: Principal
  }): Promise<ResourceRef | undefined> | ResourceRef | undefined
  handler(ctx: HandlerContext<P, Q, B>): Promise<ApiResult>
  /** Defaults to true for everything but GET. */
  write?: boolean
}

/** Erases the route's own generic types for collections of heterogeneous routes. */
// biome-ignore lint/suspicious/noExplicitAny: route tables mix parameter types
export type AnyApiRoute = ApiRoute<any, any, any>

export function defineRoute<P = Record<string, string>, Q = Record<string, unknown>, B = unknown>(
  route: ApiRoute<P, Q, B>,
): AnyApiRoute {
  return route as AnyApiRoute
}
