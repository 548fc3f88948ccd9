import { problems } from '../../core/errors.ts'
import {
  type AdminActor,
  type AdminDeps,
  Check,
  change,
  isUniqueViolation,
  SLUG,
  uid,
} from './context.ts'

export type MfaPolicy = 'none' | 'admins' | 'everyone'

export interface Realm {
  id: string
  displayName: string
  mfaPolicy: MfaPolicy
  /** Seconds; null means the server default. */
  accessTokenTtl: number | null
  disabled: boolean
  createdAt: string
}

export const realmSchema = {
  type: 'object',
  required: ['id', 'displayName', 'mfaPolicy', 'accessTokenTtl', 'disabled', 'createdAt'],
  properties: {
    id: { type: 'string', pattern: SLUG.source },
    displayName: { type: 'string', maxLength: 200 },
    mfaPolicy: { enum: ['none', 'admins', 'everyone'] },
    accessTokenTtl: { type: ['integer', 'null'], minimum: 30, maximum: 900 },
    disabled: { type: 'boolean' },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const

export const createRealmSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: {
    id: realmSchema.properties.id,
    displayName: realmSchema.properties.displayName,
    mfaPolicy: realmSchema.properties.mfaPolicy,
  },
} as const

export const updateRealmSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    displayName: realmSchema.properties.displayName,
    mfaPolicy: realmSchema.properties.mfaPolicy,
    accessTokenTtl: realmSchema.properties.accessTokenTtl,
    disabled: realmSchema.properties.disabled,
  },
} as const

type Row = {
  id: string
  display_name: string
  mfa_policy: MfaPolicy
  access_token_ttl: number | null
  disabled: boolean
  created_at: Date
}

const toRealm = (r: Row): Realm => ({
  id: r.id,
  displayName: r.display_name,
  mfaPolicy: r.mfa_policy,
  accessTokenTtl: r.access_token_ttl,
  disabled: r.disabled,
  createdAt: r.created_at.toISOString(),
})

const POLICIES = ['none', 'admins', 'everyone'] as const
function mfaPolicy(c: Check, v: unknown): MfaPolicy | undefined {
  if (v === undefined) return undefined
  if (!POLICIES.includes(v as MfaPolicy))
    c.errors.push({ field: 'mfaPolicy', message: 'is not allowed' })
  return v as MfaPolicy
}

/** Creates a tenant realm. Signing keys are made by `ensureRealmKeys` right after. */
export async function createRealm(
  deps: AdminDeps,
  who: AdminActor,
  input: { id: unknown; displayName?: unknown; mfaPolicy?: unknown },
): Promise<Realm> {
  const c = new Check()
  const id = c.text('id', input.id, { pattern: SLUG })
  const displayName = c.optText('displayName', input.displayName) ?? id
  const policy = mfaPolicy(c, input.mfaPolicy) ?? 'admins'
  c.done()
  try {
    return await change(
      deps,
      who,
      id,
      { type: 'iam.realm.created', action: 'iam:CreateTenant', resource: { type: 'Tenant', id } },
      async (tx) => {
        const { rows } = await tx.query<Row>(
          `INSERT INTO iam.realms (id, display_name, mfa_policy) VALUES ($1, $2, $3) RETURNING *`,
          [id, displayName, policy],
        )
        await deps.entities.upsert(tx, [
          { uid: uid.tenant(id), tenant: id, attrs: { name: displayName }, parents: [] },
        ])
        return toRealm(rows[0]!)
      },
    )
  } catch (err) {
    if (isUniqueViolation(err)) throw problems.conflict(`Realm ${id} already exists`)
    throw err
  }
}

export async function getRealm(deps: Pick<AdminDeps, 'db'>, id: string): Promise<Realm> {
  const { rows } = await deps.db.query<Row>('SELECT * FROM iam.realms WHERE id = $1', [id])
  if (!rows[0]) throw problems.notFound('No such realm')
  return toRealm(rows[0])
}

/** Realms in id order, one page at a time (keyset: ids after `after`). */
export async function listRealms(
  deps: Pick<AdminDeps, 'db'>,
  options: { after?: string | undefined; limit?: number | undefined } = {},
): Promise<Realm[]> {
  const { rows } = await deps.db.query<Row>(
    `SELECT * FROM iam.realms WHERE ($1::text IS NULL OR id COLLATE "C" > $1)
      ORDER BY id COLLATE "C" LIMIT $2`,
    [options.after ?? null, options.limit ?? null],
  )
  return rows.map(toRealm)
}

export async function updateRealm(
  deps: AdminDeps,
  who: AdminActor,
  id: string,
  input: {
    displayName?: unknown
    mfaPolicy?: unknown
    accessTokenTtl?: unknown
    disabled?: unknown
  },
): Promise<Realm> {
  const c = new Check()
  const displayName = c.optText('displayName', input.displayName)
  const policy = mfaPolicy(c, input.mfaPolicy)
  const ttl = input.accessTokenTtl
  if (
    ttl !== undefined &&
    ttl !== null &&
    !(Number.isInteger(ttl) && (ttl as number) >= 30 && (ttl as number) <= 900)
  )
    c.errors.push({ field: 'accessTokenTtl', message: 'must be 30..900 seconds or null' })
  const disabled =
    input.disabled === undefined ? undefined : c.bool('disabled', input.disabled, false)
  c.done()
  const realm = await change(
    deps,
    who,
    id,
    { type: 'iam.realm.updated', action: 'iam:UpdateTenant', resource: { type: 'Tenant', id } },
    async (tx) => {
      const { rows } = await tx.query<Row>(
        `UPDATE iam.realms SET display_name = coalesce($2, display_name),
           mfa_policy = coalesce($3, mfa_policy),
           access_token_ttl = CASE WHEN $4 THEN $5::integer ELSE access_token_ttl END,
           disabled = coalesce($6, disabled)
         WHERE id = $1 RETURNING *`,
        [
          id,
          displayName ?? null,
          policy ?? null,
          ttl !== undefined,
          (ttl as number) ?? null,
          disabled ?? null,
        ],
      )
      if (!rows[0]) throw problems.notFound('No such realm')
      await deps.entities.upsert(tx, [
        { uid: uid.tenant(id), tenant: id, attrs: { name: rows[0].display_name }, parents: [] },
      ])
      return toRealm(rows[0])
    },
    () => ({ fields: Object.keys(input) }),
  )
  deps.onRealmChanged?.(id)
  return realm
}
