import { problems } from '../../core/errors.ts'
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
import { mirrorUser } from './users.ts'

/** Domains, projects, groups and memberships of a realm, mirrored into authz as they change. */
export interface Domain {
  id: string
  name: string
  description: string
}
export interface Project {
  id: string
  domainId: string
  name: string
  description: string
}
export interface Group {
  id: string
  name: string
}

const named = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name'],
  properties: {
    id: { type: 'string', pattern: ID.source },
    name: { type: 'string', minLength: 1, maxLength: 200 },
    description: { type: 'string', maxLength: 2000 },
  },
} as const
export const createDomainSchema = named
export const createProjectSchema = {
  ...named,
  required: ['id', 'name', 'domainId'],
  properties: { ...named.properties, domainId: { type: 'string', pattern: ID.source } },
} as const
export const createGroupSchema = {
  ...named,
  properties: { id: named.properties.id, name: named.properties.name },
} as const

function conflictOr(err: unknown, what: string): never {
  if (isUniqueViolation(err)) throw problems.conflict(`${what} already exists`)
  if (isForeignKeyViolation(err)) throw problems.badRequest('A referenced item does not exist')
  throw err
}

export async function createDomain(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  input: Record<string, unknown>,
): Promise<Domain> {
  const c = new Check()
  const id = c.text('id', input.id, { pattern: ID })
  const name = c.text('name', input.name)
  const description = c.optText('description', input.description, { max: 2000 }) ?? ''
  c.done()
  try {
    return await change(
      deps,
      who,
      realm,
      { type: 'iam.domain.created', action: 'iam:CreateDomain', resource: { type: 'Domain', id } },
      async (tx) => {
        await tx.query(
          'INSERT INTO iam.domains (realm, id, name, description) VALUES ($1, $2, $3, $4)',
          [realm, id, name, description],
        )
        await deps.entities.upsert(tx, [
          {
            uid: uid.domain(realm, id),
            tenant: realm,
            attrs: { tenant: ref(uid.tenant(realm)), name },
            parents: [uid.tenant(realm)],
          },
        ])
        return { id, name, description }
      },
    )
  } catch (err) {
    conflictOr(err, 'Domain')
  }
}

export async function createProject(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  input: Record<string, unknown>,
): Promise<Project> {
  const c = new Check()
  const id = c.text('id', input.id, { pattern: ID })
  const domainId = c.text('domainId', input.domainId, { pattern: ID })
  const name = c.text('name', input.name)
  const description = c.optText('description', input.description, { max: 2000 }) ?? ''
  c.done()
  try {
    return await change(
      deps,
      who,
      realm,
      {
        type: 'iam.project.created',
        action: 'iam:CreateProject',
        resource: { type: 'Project', id },
      },
      async (tx) => {
        await tx.query(
          'INSERT INTO iam.projects (realm, id, domain_id, name, description) VALUES ($1, $2, $3, $4, $5)',
          [realm, id, domainId, name, description],
        )
        await deps.entities.upsert(tx, [
          {
            uid: uid.project(realm, id),
            tenant: realm,
            attrs: {
              tenant: ref(uid.tenant(realm)),
              domain: ref(uid.domain(realm, domainId)),
              name,
            },
            parents: [uid.domain(realm, domainId)],
          },
        ])
        return { id, domainId, name, description }
      },
    )
  } catch (err) {
    conflictOr(err, 'Project')
  }
}

/** One page of a listing in id order: ids after `after` (keyset cursor), at most `limit`. */
export interface KeysetPage {
  after?: string | undefined
  limit?: number | undefined
}

export async function listDomains(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  page: KeysetPage = {},
): Promise<Domain[]> {
  const { rows } = await deps.db.query<Domain>(
    `SELECT id, name, description FROM iam.domains
      WHERE realm = $1 AND ($2::text IS NULL OR id COLLATE "C" > $2)
      ORDER BY id COLLATE "C" LIMIT $3`,
    [realm, page.after ?? null, page.limit ?? null],
  )
  return rows
}

export async function listProjects(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  domainId?: string,
  page: KeysetPage = {},
): Promise<Project[]> {
  const { rows } = await deps.db.query<Project>(
    `SELECT id, domain_id AS "domainId", name, description FROM iam.projects
     WHERE realm = $1 AND ($2::text IS NULL OR domain_id = $2)
       AND ($3::text IS NULL OR id COLLATE "C" > $3)
     ORDER BY id COLLATE "C" LIMIT $4`,
    [realm, domainId ?? null, page.after ?? null, page.limit ?? null],
  )
  return rows
}

export async function deleteDomain(deps: AdminDeps, who: AdminActor, realm: string, id: string) {
  await change(
    deps,
    who,
    realm,
    { type: 'iam.domain.deleted', action: 'iam:DeleteDomain', resource: { type: 'Domain', id } },
    async (tx) => {
      const projects = await tx.query(
        'SELECT 1 FROM iam.projects WHERE realm = $1 AND domain_id = $2',
        [realm, id],
      )
      if (projects.rows.length > 0) throw problems.conflict('The domain still has projects')
      const r = await tx.query('DELETE FROM iam.domains WHERE realm = $1 AND id = $2', [realm, id])
      if (r.rowCount === 0) throw problems.notFound('No such domain')
      await deps.entities.remove(tx, [uid.domain(realm, id)])
    },
  )
}

export async function deleteProject(deps: AdminDeps, who: AdminActor, realm: string, id: string) {
  await change(
    deps,
    who,
    realm,
    { type: 'iam.project.deleted', action: 'iam:DeleteProject', resource: { type: 'Project', id } },
    async (tx) => {
      const r = await tx.query('DELETE FROM iam.projects WHERE realm = $1 AND id = $2', [realm, id])
      if (r.rowCount === 0) throw problems.notFound('No such project')
      await deps.entities.remove(tx, [uid.project(realm, id)])
    },
  )
}

export async function createGroup(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  input: Record<string, unknown>,
): Promise<Group> {
  const c = new Check()
  const id = c.text('id', input.id, { pattern: ID })
  const name = c.text('name', input.name)
  c.done()
  try {
    return await change(
      deps,
      who,
      realm,
      { type: 'iam.group.created', action: 'iam:CreateGroup', resource: { type: 'Group', id } },
      async (tx) => {
        await tx.query('INSERT INTO iam.groups (realm, id, name) VALUES ($1, $2, $3)', [
          realm,
          id,
          name,
        ])
        await deps.entities.upsert(tx, [
          {
            uid: uid.group(realm, id),
            tenant: realm,
            attrs: { tenant: ref(uid.tenant(realm)), name },
            parents: [uid.tenant(realm)],
          },
        ])
        return { id, name }
      },
    )
  } catch (err) {
    conflictOr(err, 'Group')
  }
}

export async function listGroups(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  page: KeysetPage = {},
): Promise<Group[]> {
  const { rows } = await deps.db.query<Group>(
    `SELECT id, name FROM iam.groups
      WHERE realm = $1 AND ($2::text IS NULL OR id COLLATE "C" > $2)
      ORDER BY id COLLATE "C" LIMIT $3`,
    [realm, page.after ?? null, page.limit ?? null],
  )
  return rows
}

export async function addMember(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  groupId: string,
  userId: string,
) {
  try {
    await change(
      deps,
      who,
      realm,
      {
        type: 'iam.membership.added',
        action: 'iam:AddGroupMember',
        resource: { type: 'Group', id: groupId },
      },
      async (tx) => {
        await tx.query(
          'INSERT INTO iam.memberships (realm, group_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
          [realm, groupId, userId],
        )
        await mirrorUser(deps, tx, realm, userId)
      },
      () => ({ user: userId }),
    )
  } catch (err) {
    conflictOr(err, 'Membership')
  }
}

export async function removeMember(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  groupId: string,
  userId: string,
) {
  await change(
    deps,
    who,
    realm,
    {
      type: 'iam.membership.removed',
      action: 'iam:RemoveGroupMember',
      resource: { type: 'Group', id: groupId },
    },
    async (tx) => {
      const r = await tx.query(
        'DELETE FROM iam.memberships WHERE realm = $1 AND group_id = $2 AND user_id = $3',
        [realm, groupId, userId],
      )
      if (r.rowCount === 0) throw problems.notFound('No such membership')
      await mirrorUser(deps, tx, realm, userId)
    },
    () => ({ user: userId }),
  )
}
