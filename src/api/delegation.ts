import type { Pdp } from '../authz/contract.ts'
import {
  actionId,
  RESOURCE_TYPES,
  ROLE_ACTIONS,
  type Role,
  SCOPE_TYPES,
  type ScopeType,
} from '../authz/schema.ts'
import { problems } from '../core/errors.ts'
import type { Principal } from '../gateway/principal.ts'
import type { ResourceRef } from '../gateway/route.ts'

/** The actions of `role` that act on a resource of the scope's own type (what can be checked). */
export function roleActionsAt(role: Role, scope: ScopeType): string[] {
  return ROLE_ACTIONS[role].filter((action) => {
    const verb = action.slice(action.indexOf('.') + 1)
    const type = RESOURCE_TYPES.find((t) => actionId(t.name, verb) === action)?.name
    if (type === undefined) return action === 'billing.read'
    return (
      verb === 'list' || type === 'RoleBinding' || (type === scope && SCOPE_TYPES.includes(type))
    )
  })
}

/**
 * No delegation beyond one's own rights: granting (or removing) role R at scope S needs the
 * caller to be allowed, at S, every action of R that applies there. Without it a project admin
 * could bind `tenant-admin` at its project and gain `project.delete`. The request has no source
 * address here, so address-bound permits do not count (fail closed).
 */
export async function assertMayDelegate(
  pdp: Pdp,
  principal: Principal,
  role: Role,
  scope: ResourceRef,
  scopeType: ScopeType,
): Promise<void> {
  const context: Record<string, unknown> = { amr: principal.amr, authenticated_via: principal.via }
  if (principal.authTime !== undefined) context.auth_time = principal.authTime
  for (const action of roleActionsAt(role, scopeType)) {
    const d = await pdp.decide({
      principal: principal.uid,
      action: { type: 'Dflare::Action', id: action },
      resource: scope.uid,
      context,
    })
    if (d.decision !== 'allow')
      throw problems.forbidden(`Granting ${role} here needs ${action}, which the caller lacks`)
  }
}
