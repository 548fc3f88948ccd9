import { randomUUID } from 'node:crypto'
import type { Transaction } from '../../core/db/index.ts'
import { problems } from '../../core/errors.ts'
import { endSession } from '../adapter.ts'
import { assertAcceptablePassword, hashPassword } from '../credentials/passwords.ts'
import {
  type AdminActor,
  type AdminDeps,
  Check,
  change,
  ID,
  isForeignKeyViolation,
  isUniqueViolation,
  ref,
  uid,
} from './context.ts'

export interface User {
  id: string
  username: string
  email: string | null
  emailVerified: boolean
  displayName: string
  domainId: string | null
  isAdmin: boolean
  mustEnrollMfa: boolean
  disabled: boolean
  lockedUntil: string | null
  createdAt: string
}

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/
const EMAIL = /^[^\s@]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}$/

export const userSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    username: { type: 'string', pattern: USERNAME.source },
    email: { type: ['string', 'null'] },
    emailVerified: { type: 'boolean' },
    displayName: { type: 'string' },
    domainId: { type: ['string', 'null'] },
    isAdmin: { type: 'boolean' },
    mustEnrollMfa: { type: 'boolean' },
    disabled: { type: 'boolean' },
    lockedUntil: { type: ['string', 'null'], format: 'date-time' },
    createdAt: { type: 'string', format: 'date-time' },
  },
} as const

export const createUserSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['username'],
  properties: {
    username: userSchema.properties.username,
    email: { type: 'string', maxLength: 320 },
    emailVerified: { type: 'boolean' },
    displayName: { type: 'string', maxLength: 200 },
    domainId: { type: 'string' },
    isAdmin: { type: 'boolean' },
    mustEnrollMfa: { type: 'boolean' },
    password: { type: 'string', writeOnly: true, minLength: 8, maxLength: 256 },
  },
} as const

type Row = {
  id: string
  username: string
  email: string | null
  email_verified: boolean
  display_name: string
  domain_id: string | null
  is_admin: boolean
  must_enroll_mfa: boolean
  disabled: boolean
  locked_until: Date | null
  created_at: Date
}

const toUser = (r: Row): User => ({
  id: r.id,
  username: r.username,
  email: r.email,
  emailVerified: r.email_verified,
  displayName: r.display_name,
  domainId: r.domain_id,
  isAdmin: r.is_admin,
  mustEnrollMfa: r.must_enroll_mfa,
  disabled: r.disabled,
  lockedUntil: r.locked_until && r.locked_until > new Date() ? r.locked_until.toISOString() : null,
  createdAt: r.created_at.toISOString(),
})

/** Writes the user's Cedar entity: parents are its groups and its domain (or the tenant). */
export async function mirrorUser(deps: AdminDeps, tx: Transaction, realm: string, id: string) {
  const { rows } = await tx.query<Row & { groups: string[] }>(
    `SELECT u.*, coalesce(array_agg(m.group_id) FILTER (WHERE m.group_id IS NOT NULL), '{}') AS groups
     FROM iam.users u LEFT JOIN iam.memberships m ON m.realm = u.realm AND m.user_id = u.id
     WHERE u.realm = $1 AND u.id = $2 GROUP BY u.realm, u.id`,
    [realm, id],
  )
  const u = rows[0]
  if (!u) return
  await deps.entities.upsert(tx, [
    {
      uid: uid.user(realm, id),
      tenant: realm,
      attrs: {
        tenant: ref(uid.tenant(realm)),
        username: u.username,
        isAdmin: u.is_admin,
        disabled: u.disabled,
        ...(u.domain_id ? { domain: ref(uid.domain(realm, u.domain_id)) } : {}),
      },
      parents: [
        ...u.groups.map((g) => uid.group(realm, g)),
        u.domain_id ? uid.domain(realm, u.domain_id) : uid.tenant(realm),
      ],
    },
  ])
}

export async function createUser(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  input: Record<string, unknown>,
): Promise<User> {
  const c = new Check()
  const username = c.text('username', input.username, { pattern: USERNAME, max: 128 })
  const email = c.optText('email', input.email, { pattern: EMAIL, max: 320 })
  const displayName = c.optText('displayName', input.displayName) ?? ''
  const domainId = c.optText('domainId', input.domainId, { pattern: ID })
  const isAdmin = c.bool('isAdmin', input.isAdmin, false)
  const mustEnrollMfa = c.bool('mustEnrollMfa', input.mustEnrollMfa, false)
  const emailVerified = c.bool('emailVerified', input.emailVerified, false)
  const password = input.password === undefined ? undefined : String(input.password)
  c.done()
  if (password !== undefined) assertAcceptablePassword(password, [username, realm])
  const hash = password === undefined ? undefined : await hashPassword(password)
  const id = randomUUID()
  try {
    return await change(
      deps,
      who,
      realm,
      { type: 'iam.user.created', action: 'iam:CreateUser', resource: { type: 'User', id } },
      async (tx) => {
        const { rows } = await tx.query<Row>(
          `INSERT INTO iam.users (realm, id, username, email, email_verified, display_name, domain_id,
             is_admin, must_enroll_mfa) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
          [
            realm,
            id,
            username,
            email ?? null,
            emailVerified,
            displayName,
            domainId ?? null,
            isAdmin,
            mustEnrollMfa,
          ],
        )
        if (hash)
          await tx.query(
            `INSERT INTO iam.credentials (realm, user_id, kind, hash) VALUES ($1, $2, 'password', $3)`,
            [realm, id, hash],
          )
        await mirrorUser(deps, tx, realm, id)
        return toUser(rows[0]!)
      },
      () => ({ isAdmin, withPassword: hash !== undefined }),
    )
  } catch (err) {
    if (isUniqueViolation(err)) throw problems.conflict('That user name is taken in this realm')
    if (isForeignKeyViolation(err)) throw problems.badRequest('Unknown realm or domain')
    throw err
  }
}

export async function getUser(deps: Pick<AdminDeps, 'db'>, realm: string, id: string) {
  const { rows } = await deps.db.query<Row>(
    'SELECT * FROM iam.users WHERE realm = $1 AND id = $2',
    [realm, id],
  )
  if (!rows[0]) throw problems.notFound('No such user')
  return toUser(rows[0])
}

export interface UserListOptions {
  /** Keyset pagination: only usernames after this one. */
  after?: string | undefined
  /** Only usernames starting with this. */
  prefix?: string | undefined
  /** At most this many rows. */
  limit?: number | undefined
}

/**
 * A realm's users in username order, one page at a time: the database does the filtering and the
 * limit, so a realm with a hundred thousand users is never read whole. Usernames are ASCII
 * (USERNAME), so byte order ("C") is the order clients see and resume from.
 */
export async function listUsers(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  options: UserListOptions = {},
) {
  const { rows } = await deps.db.query<Row>(
    `SELECT * FROM iam.users
      WHERE realm = $1
        AND ($2::text IS NULL OR username COLLATE "C" > $2)
        AND ($3::text IS NULL OR starts_with(username, $3))
      ORDER BY username COLLATE "C"
      LIMIT $4`,
    [realm, options.after ?? null, options.prefix ?? null, options.limit ?? null],
  )
  return rows.map(toUser)
}

export async function setPassword(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  id: string,
  password: string,
) {
  const user = await getUser(deps, realm, id)
  assertAcceptablePassword(password, [user.username, realm])
  const hash = await hashPassword(password)
  await change(
    deps,
    who,
    realm,
    { type: 'iam.user.password_set', action: 'iam:SetPassword', resource: { type: 'User', id } },
    async (tx) => {
      await tx.query(
        `INSERT INTO iam.credentials (realm, user_id, kind, hash) VALUES ($1, $2, 'password', $3)
         ON CONFLICT (realm, user_id, kind) DO UPDATE SET hash = excluded.hash, updated_at = now()`,
        [realm, id, hash],
      )
    },
  )
}

/** AC-7: an administrator lifts a lockout before it times out. */
export async function unlockUser(deps: AdminDeps, who: AdminActor, realm: string, id: string) {
  await change(
    deps,
    who,
    realm,
    { type: 'iam.user.unlocked', action: 'iam:UnlockUser', resource: { type: 'User', id } },
    async (tx) => {
      const r = await tx.query(
        `UPDATE iam.users SET locked_until = NULL, failed_logins = 0 WHERE realm = $1 AND id = $2`,
        [realm, id],
      )
      if (r.rowCount === 0) throw problems.notFound('No such user')
    },
  )
}

export async function updateUser(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  id: string,
  input: Record<string, unknown>,
): Promise<User> {
  const c = new Check()
  const email = c.optText('email', input.email, { pattern: EMAIL, max: 320 })
  const displayName = c.optText('displayName', input.displayName)
  const isAdmin = input.isAdmin === undefined ? undefined : c.bool('isAdmin', input.isAdmin, false)
  const disabled =
    input.disabled === undefined ? undefined : c.bool('disabled', input.disabled, false)
  const mustEnrollMfa =
    input.mustEnrollMfa === undefined
      ? undefined
      : c.bool('mustEnrollMfa', input.mustEnrollMfa, false)
  c.done()
  return change(
    deps,
    who,
    realm,
    { type: 'iam.user.updated', action: 'iam:UpdateUser', resource: { type: 'User', id } },
    async (tx) => {
      const { rows } = await tx.query<Row>(
        `UPDATE iam.users SET email = coalesce($3, email), display_name = coalesce($4, display_name),
           is_admin = coalesce($5, is_admin), disabled = coalesce($6, disabled),
           must_enroll_mfa = coalesce($7, must_enroll_mfa)
         WHERE realm = $1 AND id = $2 RETURNING *`,
        [
          realm,
          id,
          email ?? null,
          displayName ?? null,
          isAdmin ?? null,
          disabled ?? null,
          mustEnrollMfa ?? null,
        ],
      )
      if (!rows[0]) throw problems.notFound('No such user')
      // A disabled account loses its sessions and refresh tokens at once.
      if (disabled) {
        const sessions = await tx.query<{ id: string }>(
          `SELECT id FROM iam.oidc_payloads WHERE realm = $1 AND model = 'Session' AND account_id = $2`,
          [realm, id],
        )
        for (const s of sessions.rows) await endSession(tx, realm, s.id)
      }
      await mirrorUser(deps, tx, realm, id)
      return toUser(rows[0])
    },
    () => ({ fields: Object.keys(input) }),
  )
}

export async function deleteUser(deps: AdminDeps, who: AdminActor, realm: string, id: string) {
  await change(
    deps,
    who,
    realm,
    { type: 'iam.user.deleted', action: 'iam:DeleteUser', resource: { type: 'User', id } },
    async (tx) => {
      const sessions = await tx.query<{ id: string }>(
        `SELECT id FROM iam.oidc_payloads WHERE realm = $1 AND model = 'Session' AND account_id = $2`,
        [realm, id],
      )
      for (const s of sessions.rows) await endSession(tx, realm, s.id)
      const r = await tx.query('DELETE FROM iam.users WHERE realm = $1 AND id = $2', [realm, id])
      if (r.rowCount === 0) throw problems.notFound('No such user')
      await tx.query(`DELETE FROM iam.oidc_payloads WHERE realm = $1 AND account_id = $2`, [
        realm,
        id,
      ])
      await deps.entities.remove(tx, [uid.user(realm, id)])
    },
  )
}
