import type { EntityRecord, EntityUid, Pdp } from '../../authz/contract.ts'
import type { Db, Queryable, SqlValue, Transaction } from '../../core/db/index.ts'
import { type FieldError, Problem, problems } from '../../core/errors.ts'
import type { CallContext, JsonSchema, ResourceRef } from '../../gateway/route.ts'
import { type AdminActor, type AdminDeps, ID, uid } from '../../iam/admin/context.ts'
import { type CapturedEvent, txAdminDeps } from '../admin-tx.ts'
import { decodeCursor, page, paginationQuery } from '../pagination.ts'
import { tenantParam } from '../schemas.ts'
import { readInTenant } from '../tenant-scope.ts'

export interface IdentityRouteDeps {
  /** The IAM management dependencies (database, entity writer, sealer, event sink). */
  admin: AdminDeps
  /** The decision point, asked again when a role is granted (no delegation beyond one's own). */
  pdp: Pdp
}

export const PLATFORM = 'platform'
export const TAGS = ['identity']
export const CLIENT_ID = '^[a-z0-9][a-z0-9_-]{2,63}$'
export const SESSION_ID = '^[A-Za-z0-9_-]{1,128}$'
export const UUID = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

export const itemId = { type: 'string', pattern: ID.source } as const
export const userId = { type: 'string', pattern: UUID } as const
export const clientId = { type: 'string', pattern: CLIENT_ID } as const

/** Params schema: every listed parameter required, nothing else. */
export function params(props: Record<string, JsonSchema>): JsonSchema {
  return {
    type: 'object',
    additionalProperties: false,
    required: Object.keys(props),
    properties: props,
  }
}
export const tenantOnly = params({ tenant: tenantParam })
export const listQuery = (extra: Record<string, JsonSchema> = {}): JsonSchema => ({
  type: 'object',
  additionalProperties: false,
  properties: { ...paginationQuery, ...extra },
})
export const listOf = (item: JsonSchema): JsonSchema => ({
  type: 'object',
  properties: { items: { type: 'array', items: item }, next_cursor: { type: 'string' } },
})

export type ListQuery = { limit: number; cursor?: string }
export type T = { tenant: string }

/** The keyset page a list query asks for: one row more than the limit tells if there is a next. */
export const keyset = (query: ListQuery) => ({
  after: decodeCursor(query.cursor),
  limit: query.limit + 1,
})

/**
 * A page of an already-loaded list, ordered by `key`: for lists bounded by nature (a user's
 * passkeys); anything that grows with a tenant pages in SQL (`keyset`).
 */
export function paged<R>(rows: R[], query: ListQuery, key: (r: R) => string) {
  const after = decodeCursor(query.cursor)
  const sorted = rows
    .map((r) => [key(r), r] as const)
    .filter(([k]) => after === undefined || k > after)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, r]) => r)
  return page(sorted.slice(0, query.limit + 1), query.limit, key)
}

export const who = (call: CallContext): AdminActor => ({
  actor: call.actor,
  correlationId: call.correlationId,
  sourceIp: call.sourceIp,
})

/** Secret-free audit detail: the domain events the change produced. */
export const auditOf = (events: CapturedEvent[], extra: Record<string, unknown> = {}) => ({
  ...extra,
  events: events.map((e) => ({
    type: e.type,
    action: e.action,
    ...(e.resource ? { resource: e.resource } : {}),
    ...(e.details ? { details: e.details } : {}),
  })),
})

export const tenantRef = (tenant: string): ResourceRef => ({ uid: uid.tenant(tenant), tenant })

/** A not-yet-existing entity described for the decision only (never stored from here). */
export function newEntity(
  tenant: string,
  entityUid: EntityUid,
  parents: EntityUid[],
  attrs: Record<string, unknown> = {},
): ResourceRef {
  const record: EntityRecord = { uid: entityUid, tenant, attrs, parents }
  return { uid: entityUid, tenant, entities: [record] }
}

/** Items a write produces get their tenant-qualified Cedar uid as the audited resource. */
export const audited = (u: EntityUid) => ({ type: u.type, id: u.id })

/** Sends secrets only where nothing caches them; refuses Idempotency-Key (the replay store). */
export function refuseIdempotentSecret(request: { headers: Record<string, unknown> }) {
  if (request.headers['idempotency-key'] !== undefined)
    throw problems.badRequest(
      'Idempotency-Key is not accepted on an operation that returns a secret',
      [{ field: 'headers.idempotency-key', message: 'is not accepted here' }],
    )
}

/** The management functions name input fields bare; the API names them where they came from. */
export function inBody(err: unknown): never {
  if (err instanceof Problem && err.status === 400 && Array.isArray(err.extensions.errors)) {
    const errors = (err.extensions.errors as FieldError[]).map((e) => ({
      field: e.field.startsWith('body.') ? e.field : `body.${e.field}`,
      message: e.message,
    }))
    throw problems.badRequest(`${errors[0]?.field} ${errors[0]?.message}`, errors)
  }
  throw err
}

export function fieldMissing(field: string): never {
  throw problems.badRequest(`${field} does not exist`, [{ field, message: 'does not exist' }])
}

/** What every identity route file shares: the IAM admin deps and tenant-confined lookups. */
export interface IdentityContext {
  admin: AdminDeps
  deps: IdentityRouteDeps
  read<R>(tenant: string, fn: (d: { db: Db }) => Promise<R>): Promise<R>
  exists(tenant: string, sql: string, args: SqlValue[]): Promise<boolean>
  privateExists(sql: string, args: SqlValue[]): Promise<boolean>
  write<R>(
    tx: Transaction | undefined,
    fn: (d: AdminDeps) => Promise<R>,
  ): Promise<{ result: R; events: CapturedEvent[] }>
  domainExists(t: string, id: string): Promise<boolean>
  projectExists(t: string, id: string): Promise<boolean>
  groupExists(t: string, id: string): Promise<boolean>
  userExists(t: string, id: string): Promise<boolean>
  serviceAccountExists(t: string, id: string): Promise<boolean>
}

export function identityContext(deps: IdentityRouteDeps): IdentityContext {
  const admin = deps.admin

  /** Read-only, as `dflare_app` confined to the tenant by row-level security. */
  const read = <R>(tenant: string, fn: (d: { db: Db }) => Promise<R>) =>
    readInTenant(admin.db, tenant, (q) => fn({ db: q as Db }))
  const exists = (tenant: string, sql: string, args: SqlValue[]) =>
    readInTenant(
      admin.db,
      tenant,
      async (q: Queryable) => (await q.query(sql, args)).rows.length > 0,
    )
  /**
   * Clients and OIDC sessions stay private to the iam module (no grant to `dflare_app`): they are
   * read with the module's own access, always filtered by the path's tenant.
   */
  const privateExists = async (sql: string, args: SqlValue[]) =>
    (await admin.db.query(sql, args)).rows.length > 0

  /** Runs IAM management functions in the gateway's transaction, capturing their events. */
  async function write<R>(
    tx: Transaction | undefined,
    fn: (d: AdminDeps) => Promise<R>,
  ): Promise<{ result: R; events: CapturedEvent[] }> {
    if (!tx) throw problems.internal()
    const bound = txAdminDeps(admin, tx)
    const result = await fn(bound.deps).catch(inBody)
    return { result, events: bound.events }
  }

  const domainExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.domains WHERE realm = $1 AND id = $2', [t, id])
  const projectExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.projects WHERE realm = $1 AND id = $2', [t, id])
  const groupExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.groups WHERE realm = $1 AND id = $2', [t, id])
  const userExists = (t: string, id: string) =>
    exists(t, 'SELECT 1 FROM iam.users WHERE realm = $1 AND id = $2', [t, id])
  const serviceAccountExists = (t: string, id: string) =>
    privateExists(
      'SELECT 1 FROM iam.clients WHERE realm = $1 AND client_id = $2 AND service_account',
      [t, id],
    )

  return {
    admin,
    deps,
    read,
    exists,
    privateExists,
    write,
    domainExists,
    projectExists,
    groupExists,
    userExists,
    serviceAccountExists,
  }
}
