/**
 * Writes to the entity store, always inside the caller's transaction: the rows, a revision bump
 * and a NOTIFY commit together, so a process either sees the change and its notification or
 * neither. Other modules use this through the EntityWriter contract.
 */
import type { Queryable, Transaction } from '../core/db/index.ts'
import { problems } from '../core/errors.ts'
import { valueFromJson } from './cedar/values.ts'
import type { EntityRecord, EntityUid, EntityWriter } from './contract.ts'
import { NAMESPACE, ROLES, type Role, SCOPE_TYPES, type ScopeType } from './schema.ts'

export const CHANGES_CHANNEL = 'authz_changes'
/** PostgreSQL limits NOTIFY payloads to 8000 bytes; past this we send "everything changed". */
const MAX_PAYLOAD = 7000

export interface ChangeNotice {
  revision: number
  /** Changed entities as [type, id]; absent with `all`. */
  entities?: [string, string][]
  /** Tenants whose role-binding groups (and so their binding policies) changed. */
  bindingTenants?: string[]
  /** Tenants whose active policy set changed. */
  policyTenants?: string[]
  all?: boolean
}

export async function bumpRevision(tx: Transaction): Promise<number> {
  const { rows } = await tx.query<{ revision: number }>(
    'UPDATE authz.state SET revision = revision + 1 RETURNING revision',
  )
  return rows[0]!.revision
}

export async function notifyChange(tx: Transaction, notice: ChangeNotice) {
  let payload = JSON.stringify(notice)
  if (Buffer.byteLength(payload) > MAX_PAYLOAD)
    payload = JSON.stringify({ revision: notice.revision, all: true } satisfies ChangeNotice)
  await tx.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, payload])
}

const ID_MAX = 512
const PRINCIPAL_TYPES = ['User', 'Group', 'ServiceAccount'] as const

function checkUid(uid: EntityUid, field: string) {
  if (
    !uid ||
    typeof uid.type !== 'string' ||
    !uid.type.startsWith(`${NAMESPACE}::`) ||
    typeof uid.id !== 'string' ||
    uid.id.length === 0 ||
    uid.id.length > ID_MAX
  )
    throw problems.badRequest(`${field} must be a ${NAMESPACE}:: entity with a non-empty id`)
}

function checkRecord(e: EntityRecord) {
  checkUid(e.uid, 'uid')
  if (typeof e.tenant !== 'string' || e.tenant.length === 0)
    throw problems.badRequest(`entity ${e.uid.type} needs its tenant`)
  for (const p of e.parents ?? []) checkUid(p, 'parent')
  // Role-binding membership only comes from authz.role_bindings; actions only from the schema.
  const reserved = [`${NAMESPACE}::RoleBinding`, `${NAMESPACE}::Action`]
  if (reserved.includes(e.uid.type) || (e.parents ?? []).some((p) => reserved.includes(p.type)))
    throw problems.badRequest('RoleBinding and Action entities are managed by authz itself')
  for (const v of Object.values(e.tags ?? {}))
    if (typeof v !== 'string') throw problems.badRequest('entity tags (labels) are strings')
  try {
    valueFromJson(e.attrs ?? {})
  } catch (err) {
    throw problems.badRequest(
      `entity ${e.uid.type} has invalid attributes: ${(err as Error).message}`,
    )
  }
}

export class StoreWriter implements EntityWriter {
  async upsert(tx: Transaction, entities: readonly EntityRecord[]): Promise<void> {
    if (entities.length === 0) return
    for (const e of entities) checkRecord(e)
    const revision = await bumpRevision(tx)
    for (const e of entities) {
      // The tenant is part of the identity of an entity: it never moves to another tenant.
      const { rowCount } = await tx.query(
        `INSERT INTO authz.entities (type, id, tenant, attrs, parents, tags, revision)
         VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7)
         ON CONFLICT (type, id) DO UPDATE
           SET attrs = EXCLUDED.attrs, parents = EXCLUDED.parents, tags = EXCLUDED.tags,
               revision = EXCLUDED.revision
           WHERE authz.entities.tenant = EXCLUDED.tenant`,
        [
          e.uid.type,
          e.uid.id,
          e.tenant,
          JSON.stringify(e.attrs ?? {}),
          JSON.stringify(e.parents ?? []),
          JSON.stringify(e.tags ?? {}),
          revision,
        ],
      )
      if (rowCount !== 1)
        throw problems.conflict(`entity ${e.uid.type} already exists in another tenant`)
    }
    await notifyChange(tx, { revision, entities: entities.map((e) => [e.uid.type, e.uid.id]) })
  }

  async remove(tx: Transaction, uids: readonly EntityUid[]): Promise<void> {
    if (uids.length === 0) return
    for (const u of uids) checkUid(u, 'uid')
    const revision = await bumpRevision(tx)
    const tenants = new Set<string>()
    for (const u of uids) {
      await tx.query('DELETE FROM authz.entities WHERE type = $1 AND id = $2', [u.type, u.id])
      const short = u.type.slice(NAMESPACE.length + 2)
      const { rows } = await tx.query<{ tenant: string }>(
        `DELETE FROM authz.role_bindings
          WHERE (principal_type = $1 AND principal_id = $2) OR (scope_type = $1 AND scope_id = $2)
          RETURNING tenant`,
        [short, u.id],
      )
      for (const r of rows) tenants.add(r.tenant)
    }
    await notifyChange(tx, {
      revision,
      entities: uids.map((u) => [u.type, u.id]),
      bindingTenants: [...tenants],
    })
  }
}

export interface RoleBindingInput {
  tenant: string
  principal: { type: (typeof PRINCIPAL_TYPES)[number]; id: string }
  role: Role
  scope: { type: ScopeType; id: string }
}

function checkBinding(b: RoleBindingInput) {
  if (!ROLES.includes(b.role)) throw problems.badRequest(`unknown role ${JSON.stringify(b.role)}`)
  if (!PRINCIPAL_TYPES.includes(b.principal?.type))
    throw problems.badRequest('a binding principal is a User, Group or ServiceAccount')
  if (!SCOPE_TYPES.includes(b.scope?.type))
    throw problems.badRequest('a binding scope is a Tenant, Domain or Project')
  if (!b.principal.id || !b.scope.id || !b.tenant)
    throw problems.badRequest('a binding needs a tenant, a principal id and a scope id')
  const platformScope = b.tenant === 'platform' && b.scope.type === 'Tenant'
  if ((b.role === 'platform-admin' || b.role === 'security-officer') && !platformScope)
    throw problems.badRequest(`${b.role} is only bound at the platform tenant's scope`)
}

/** Both ends of a binding must be known entities of the binding's tenant. */
async function checkTenancy(tx: Transaction, b: RoleBindingInput) {
  const { rows } = await tx.query<{ type: string; tenant: string }>(
    `SELECT type, tenant FROM authz.entities
      WHERE (type = $1 AND id = $2) OR (type = $3 AND id = $4)`,
    [
      `${NAMESPACE}::${b.principal.type}`,
      b.principal.id,
      `${NAMESPACE}::${b.scope.type}`,
      b.scope.id,
    ],
  )
  if (rows.length !== 2)
    throw problems.badRequest('the principal and the scope of a binding must both exist')
  if (rows.some((r) => r.tenant !== b.tenant))
    throw problems.forbidden('a binding cannot cross tenants')
}

export async function addRoleBinding(tx: Transaction, b: RoleBindingInput): Promise<void> {
  checkBinding(b)
  await checkTenancy(tx, b)
  const revision = await bumpRevision(tx)
  await tx.query(
    `INSERT INTO authz.role_bindings (tenant, principal_type, principal_id, role, scope_type, scope_id)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
    [b.tenant, b.principal.type, b.principal.id, b.role, b.scope.type, b.scope.id],
  )
  await notifyChange(tx, {
    revision,
    entities: [[`${NAMESPACE}::${b.principal.type}`, b.principal.id]],
    bindingTenants: [b.tenant],
  })
}

export async function removeRoleBinding(tx: Transaction, b: RoleBindingInput): Promise<boolean> {
  checkBinding(b)
  const revision = await bumpRevision(tx)
  const { rowCount } = await tx.query(
    `DELETE FROM authz.role_bindings
      WHERE tenant = $1 AND principal_type = $2 AND principal_id = $3 AND role = $4
        AND scope_type = $5 AND scope_id = $6`,
    [b.tenant, b.principal.type, b.principal.id, b.role, b.scope.type, b.scope.id],
  )
  await notifyChange(tx, {
    revision,
    entities: [[`${NAMESPACE}::${b.principal.type}`, b.principal.id]],
    bindingTenants: [b.tenant],
  })
  return rowCount > 0
}

/** Whether exactly this binding exists. */
export async function hasRoleBinding(q: Queryable, b: RoleBindingInput): Promise<boolean> {
  const { rows } = await q.query(
    `SELECT 1 FROM authz.role_bindings WHERE tenant = $1 AND principal_type = $2 AND principal_id = $3
       AND role = $4 AND scope_type = $5 AND scope_id = $6`,
    [b.tenant, b.principal.type, b.principal.id, b.role, b.scope.type, b.scope.id],
  )
  return rows.length > 0
}
