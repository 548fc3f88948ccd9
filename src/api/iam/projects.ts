import { type AnyApiRoute, defineRoute } from '../../gateway/route.ts'
import { uid } from '../../iam/admin/context.ts'
import {
  createProject,
  createProjectSchema,
  deleteProject,
  listProjects,
} from '../../iam/admin/directory.ts'
import { page } from '../pagination.ts'
import { tenantParam } from '../schemas.ts'
import {
  audited,
  auditOf,
  fieldMissing,
  type IdentityContext,
  itemId,
  keyset,
  type ListQuery,
  listOf,
  listQuery,
  newEntity,
  params,
  type T,
  TAGS,
  tenantOnly,
  tenantRef,
  who,
} from './common.ts'

export function projectRoutes(ctx: IdentityContext): AnyApiRoute[] {
  const { read, write, domainExists, projectExists } = ctx
  const base = '/tenants/:tenant/projects'
  type Item = T & { project: string }
  type Body = { id: string; name: string; domainId: string; description?: string }
  const projectSchema = createProjectSchema
  return [
    defineRoute<T, ListQuery & { domainId?: string }>({
      method: 'GET',
      url: base,
      action: 'project.list',
      summary: 'List projects (optionally of one domain)',
      tags: TAGS,
      schema: {
        params: tenantOnly,
        querystring: listQuery({ domainId: itemId }),
        response: { 200: listOf(projectSchema) },
      },
      // Filtered by a domain, the listing acts on that domain (so domain admins may list it).
      resource: async ({ tenant, query }) => {
        if (!query.domainId) return tenantRef(tenant)
        return (await domainExists(tenant, query.domainId))
          ? { uid: uid.domain(tenant, query.domainId), tenant }
          : undefined
      },
      handler: async ({ tenant, query }) => ({
        body: page(
          await read(tenant, (d) => listProjects(d, tenant, query.domainId, keyset(query))),
          query.limit,
          (r) => r.id,
        ),
      }),
    }),
    defineRoute<T, Record<string, never>, Body>({
      method: 'POST',
      url: base,
      action: 'project.create',
      summary: 'Create a project in a domain',
      tags: TAGS,
      schema: { params: tenantOnly, body: createProjectSchema, response: { 201: projectSchema } },
      resource: async ({ tenant, body }) => {
        if (!(await domainExists(tenant, body.domainId))) fieldMissing('body.domainId')
        return (await projectExists(tenant, body.id))
          ? { uid: uid.project(tenant, body.id), tenant }
          : newEntity(tenant, uid.project(tenant, body.id), [uid.domain(tenant, body.domainId)], {
              name: body.name,
            })
      },
      handler: async ({ tx, call, tenant, body }) => {
        const { result, events } = await write(tx, (d) => createProject(d, who(call), tenant, body))
        return {
          status: 201,
          body: result,
          audit: auditOf(events),
          auditResource: audited(uid.project(tenant, result.id)),
        }
      },
    }),
    defineRoute<Item>({
      method: 'DELETE',
      url: `${base}/:project`,
      action: 'project.delete',
      summary: 'Delete a project',
      tags: TAGS,
      schema: { params: params({ tenant: tenantParam, project: itemId }) },
      resource: async ({ tenant, params: p }) =>
        (await projectExists(tenant, p.project))
          ? { uid: uid.project(tenant, p.project), tenant }
          : undefined,
      handler: async ({ tx, call, tenant, params: p }) => {
        const { events } = await write(tx, (d) => deleteProject(d, who(call), tenant, p.project))
        return { status: 204, audit: auditOf(events) }
      },
    }),
  ]
}
