import { randomBytes } from 'node:crypto'
import type { EntityRecord, EntityUid, EntityWriter } from '../authz/contract.ts'
import type { Db, Queryable } from '../core/db/index.ts'
import { problems } from '../core/errors.ts'
import { NAMESPACE, resourceUid, tenantUid } from '../gateway/principal.ts'
import { type AnyApiRoute, defineRoute, type ResourceRef } from '../gateway/route.ts'
import { decodeCursor, page, paginationQuery } from './pagination.ts'
import { ID, idParam, labels, tenantParam } from './schemas.ts'
import { inTenant, readInTenant } from './tenant-scope.ts'

/**
 * Platform resources as records with an owner and labels: clusters, node pools, networks and
 * volumes. The isolation layer realises them; here they are created, listed, read, updated and
 * deleted per tenant, each mirrored into the authz entity store in the same transaction.
 */
const KINDS = {
  clusters: 'Cluster',
  nodepools: 'NodePool',
  networks: 'Network',
  volumes: 'Volume',
} as const
type Collection = keyof typeof KINDS
type Kind = (typeof KINDS)[Collection]

interface Row {
  tenant: string
  kind: Kind
  id: string
  name: string
  project: string | null
  cluster: string | null
  owner: string
  labels: Record<string, string>
  classification: string
  spec: Record<string, unknown>
  version: number
  created_at: Date
  updated_at: Date
}

const CLASSIFICATIONS = ['public', 'internal', 'confidential', 'restricted']

const recordSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    kind: { type: 'string' },
    name: { type: 'string' },
    project: { type: ['string', 'null'] },
    cluster: { type: ['string', 'null'] },
    owner: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    classification: { type: 'string' },
    spec: { type: 'object', additionalProperties: true },
    version: { type: 'integer' },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
  },
} as const

const specSchema = { type: 'object', maxProperties: 64, additionalProperties: true } as const

function view(r: Row) {
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    project: r.project,
    cluster: r.cluster,
    owner: r.owner,
    labels: r.labels,
    classification: r.classification,
    spec: r.spec,
    version: r.version,
    created_at: r.created_at.toISOString(),
    updated_at: r.updated_at.toISOString(),
  }
}

function entityOf(
  r: Pick<
    Row,
    'tenant' | 'kind' | 'id' | 'project' | 'cluster' | 'owner' | 'labels' | 'classification'
  >,
): EntityRecord {
  const parents: EntityUid[] = []
  if (r.cluster) parents.push(resourceUid('Cluster', r.tenant, r.cluster))
  if (r.project) parents.push({ type: `${NAMESPACE}::Project`, id: `${r.tenant}/${r.project}` })
  if (!parents.length) parents.push(tenantUid(r.tenant))
  return {
    uid: resourceUid(r.kind, r.tenant, r.id),
    tenant: r.tenant,
    attrs: { tenant: r.tenant, owner: r.owner, classification: r.classification },
    parents,
    tags: r.labels,
  }
}

async function fetchOne(
  q: Queryable,
  tenant: string,
  kind: Kind,
  id: string,
): Promise<Row | undefined> {
  const { rows } = await q.query<Row>(
    'SELECT * FROM api.resources WHERE tenant = $1 AND kind = $2 AND id = $3',
    [tenant, kind, id],
  )
  return rows[0]
}

export interface ResourceDeps {
  db: Db
  entities: EntityWriter
  /** Whether a project exists in the tenant (IAM); records may only name existing projects. */
  projectExists(tenant: string, project: string): Promise<boolean>
}

type ItemParams = { tenant: string; id: string }
type ListQuery = { limit: number; cursor?: string; project?: string; label?: string; name?: string }
type CreateBody = {
  name: string
  project?: string
  cluster?: string
  labels?: Record<string, string>
  classification?: string
  spec?: Record<string, unknown>
}
type UpdateBody = {
  labels?: Record<string, string>
  classification?: string
  spec?: Record<string, unknown>
  version: number
}

export function resourceRoutes(deps: ResourceDeps): AnyApiRoute[] {
  const routes: AnyApiRoute[] = []
  for (const [collection, kind] of Object.entries(KINDS) as [Collection, Kind][]) {
    const action = (verb: string) => `${kind.toLowerCase()}.${verb}`
    const base = `/tenants/:tenant/${collection}`
    const tags = ['resources']
    const existing = async ({
      params,
    }: {
      params: ItemParams
    }): Promise<ResourceRef | undefined> => {
      const row = await readInTenant(deps.db, params.tenant, (q) =>
        fetchOne(q, params.tenant, kind, params.id),
      )
      return row && { uid: resourceUid(kind, row.tenant, row.id), tenant: row.tenant }
    }

    routes.push(
      defineRoute<{ tenant: string }, ListQuery>({
        method: 'GET',
        url: base,
        action: action('list'),
        summary: `List ${collection}`,
        tags,
        schema: {
          params: { type: 'object', required: ['tenant'], properties: { tenant: tenantParam } },
          querystring: {
            type: 'object',
            additionalProperties: false,
            properties: {
              ...paginationQuery,
              project: { type: 'string', pattern: ID },
              name: { type: 'string', maxLength: 63 },
              label: {
                type: 'string',
                pattern: '^[a-z0-9._/-]{1,63}=[^,]{0,63}$',
                description: 'key=value',
              },
            },
          },
          response: {
            200: {
              type: 'object',
              properties: {
                items: { type: 'array', items: recordSchema },
                next_cursor: { type: 'string' },
              },
            },
          },
        },
        // Listing acts on the container: the project when filtered by one, else the tenant.
        resource: ({ tenant, query }) =>
          query.project
            ? { uid: { type: `${NAMESPACE}::Project`, id: `${tenant}/${query.project}` }, tenant }
            : { uid: tenantUid(tenant), tenant },
        handler: async ({ tenant, query }) => {
          const after = decodeCursor(query.cursor)
          const [labelKey, labelValue] = query.label
            ? [
                query.label.slice(0, query.label.indexOf('=')),
                query.label.slice(query.label.indexOf('=') + 1),
              ]
            : []
          const rows = await readInTenant(
            deps.db,
            tenant,
            async (q) =>
              (
                await q.query<Row>(
                  `SELECT * FROM api.resources
                  WHERE tenant = $1 AND kind = $2
                    AND ($3::text IS NULL OR id > $3)
                    AND ($4::text IS NULL OR project = $4)
                    AND ($5::text IS NULL OR name = $5)
                    AND ($6::text IS NULL OR labels ->> $6 = $7)
                  ORDER BY id LIMIT $8`,
                  [
                    tenant,
                    kind,
                    after ?? null,
                    query.project ?? null,
                    query.name ?? null,
                    labelKey ?? null,
                    labelValue ?? null,
                    query.limit + 1,
                  ],
                )
              ).rows,
          )
          const p = page(rows, query.limit, (r) => r.id)
          return { body: { ...p, items: p.items.map(view) } }
        },
      }),
      defineRoute<{ tenant: string }, Record<string, never>, CreateBody>({
        method: 'POST',
        url: base,
        action: action('create'),
        summary: `Create a ${kind}`,
        tags,
        schema: {
          params: { type: 'object', required: ['tenant'], properties: { tenant: tenantParam } },
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            properties: {
              name: { type: 'string', pattern: ID },
              project: { type: 'string', pattern: ID },
              ...(kind === 'NodePool' ? { cluster: { type: 'string', pattern: ID } } : {}),
              labels,
              classification: { type: 'string', enum: CLASSIFICATIONS },
              spec: specSchema,
            },
          },
          response: { 201: recordSchema },
        },
        // The new record is the resource: a request-scoped entity placed in its project/cluster.
        resource: async ({ tenant, body, principal }) => {
          if (body.project && !(await deps.projectExists(tenant, body.project)))
            throw problems.badRequest('body.project does not exist', [
              { field: 'body.project', message: 'does not exist' },
            ])
          const id = `${kind.toLowerCase()}-${randomBytes(6).toString('hex')}`
          const entity = entityOf({
            tenant,
            kind,
            id,
            project: body.project ?? null,
            cluster: body.cluster ?? null,
            owner: principal.subject,
            labels: body.labels ?? {},
            classification: body.classification ?? 'internal',
          })
          return { uid: entity.uid, tenant, entities: [entity] }
        },
        handler: async ({ tx, tenant, body, resource, principal }) => {
          const id = resource.uid.id.slice(tenant.length + 1)
          const row = await inTenant(tx!, tenant, async (q) => {
            if (body.cluster && !(await fetchOne(q, tenant, 'Cluster', body.cluster)))
              throw problems.badRequest('body.cluster does not exist', [
                { field: 'body.cluster', message: 'does not exist' },
              ])
            const { rows } = await q.query<Row>(
              `INSERT INTO api.resources (tenant, kind, id, name, project, cluster, owner, labels, classification, spec)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               ON CONFLICT (tenant, kind, name) DO NOTHING RETURNING *`,
              [
                tenant,
                kind,
                id,
                body.name,
                body.project ?? null,
                body.cluster ?? null,
                principal.subject,
                JSON.stringify(body.labels ?? {}),
                body.classification ?? 'internal',
                JSON.stringify(body.spec ?? {}),
              ],
            )
            if (!rows[0]) throw problems.conflict(`a ${kind} named ${body.name} already exists`)
            return rows[0]
          })
          await deps.entities.upsert(tx!, [entityOf(row)])
          return {
            status: 201,
            body: view(row),
            headers: { location: `/api/v1${base.replace(':tenant', tenant)}/${id}` },
          }
        },
      }),
      defineRoute<ItemParams>({
        method: 'GET',
        url: `${base}/:id`,
        action: action('read'),
        summary: `Read a ${kind}`,
        tags,
        schema: {
          params: {
            type: 'object',
            required: ['tenant', 'id'],
            properties: { tenant: tenantParam, id: idParam },
          },
          response: { 200: recordSchema },
        },
        resource: existing,
        handler: async ({ tenant, params }) => {
          const row = await readInTenant(deps.db, tenant, (q) =>
            fetchOne(q, tenant, kind, params.id),
          )
          if (!row) throw problems.notFound()
          return { body: view(row) }
        },
      }),
      defineRoute<ItemParams, Record<string, never>, UpdateBody>({
        method: 'PATCH',
        url: `${base}/:id`,
        action: action('update'),
        summary: `Update a ${kind}'s labels, classification or spec (optimistic concurrency on version)`,
        tags,
        schema: {
          params: {
            type: 'object',
            required: ['tenant', 'id'],
            properties: { tenant: tenantParam, id: idParam },
          },
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['version'],
            properties: {
              labels,
              classification: { type: 'string', enum: CLASSIFICATIONS },
              spec: specSchema,
              version: { type: 'integer', minimum: 1 },
            },
          },
          response: { 200: recordSchema },
        },
        resource: existing,
        handler: async ({ tx, tenant, params, body }) => {
          const row = await inTenant(tx!, tenant, async (q) => {
            const { rows } = await q.query<Row>(
              `UPDATE api.resources SET
                 labels = COALESCE($4::jsonb, labels), classification = COALESCE($5, classification),
                 spec = COALESCE($6::jsonb, spec), version = version + 1, updated_at = now()
               WHERE tenant = $1 AND kind = $2 AND id = $3 AND version = $7 RETURNING *`,
              [
                tenant,
                kind,
                params.id,
                body.labels ? JSON.stringify(body.labels) : null,
                body.classification ?? null,
                body.spec ? JSON.stringify(body.spec) : null,
                body.version,
              ],
            )
            if (!rows[0])
              throw problems.conflict('the record changed since that version; read it again')
            return rows[0]
          })
          await deps.entities.upsert(tx!, [entityOf(row)])
          return { body: view(row) }
        },
      }),
      defineRoute<ItemParams>({
        method: 'DELETE',
        url: `${base}/:id`,
        action: action('delete'),
        summary: `Delete a ${kind}`,
        tags,
        schema: {
          params: {
            type: 'object',
            required: ['tenant', 'id'],
            properties: { tenant: tenantParam, id: idParam },
          },
        },
        resource: existing,
        handler: async ({ tx, tenant, params }) => {
          await inTenant(tx!, tenant, async (q) => {
            const { rowCount } = await q.query(
              'DELETE FROM api.resources WHERE tenant = $1 AND kind = $2 AND id = $3',
              [tenant, kind, params.id],
            )
            if (!rowCount) throw problems.notFound()
          })
          await deps.entities.remove(tx!, [resourceUid(kind, tenant, params.id)])
          return { status: 204 }
        },
      }),
    )
  }
  return routes
}
