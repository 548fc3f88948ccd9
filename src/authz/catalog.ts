/**
 * The built-in policies, written in Cedar:
 * - platform guard rails (`forbid`s no tenant policy can override, because forbid wins),
 * - self-service: a user manages their own second factors (every guard rail still applies),
 * - one template per built-in role; a role binding group "role R at scope S" links the template
 *   with ?principal = the RoleBinding group and ?resource = the scope (or every resource for
 *   platform-scope bindings). Inheritance down the hierarchy is plain Cedar `in`.
 */
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import { UnsupportedPolicyError } from './cedar/errors.ts'
import { compileText, parsePolicySetText } from './cedar/parse.ts'
import type { JsonNode, PolicyJson, PolicySource } from './cedar/policyset.ts'
import {
  NAMESPACE,
  PLATFORM_GROUP,
  ROLES,
  type Role,
  roleGroup,
  SENSITIVE_GROUP,
} from './schema.ts'

export const PLATFORM_TENANT = 'platform'
/** Longest accepted age of the authentication for sensitive actions (seconds). */
export const MFA_MAX_AGE_SECONDS = 900

const A = `${NAMESPACE}::Action`

export const PLATFORM_POLICIES_TEXT = `
@id("platform.tenant-isolation")
@description("No principal reaches another tenant's resources, whatever a tenant policy says; only platform principals (still needing a permit) cross tenants.")
forbid (principal, action, resource)
unless {
  principal has tenant && resource has tenant &&
  (principal.tenant == resource.tenant || principal.tenant == "${PLATFORM_TENANT}")
};

@id("platform.platform-only-actions")
@description("Actions reserved to principals of the platform tenant.")
forbid (principal, action in ${A}::"${PLATFORM_GROUP}", resource)
unless { principal has tenant && principal.tenant == "${PLATFORM_TENANT}" };

@id("platform.mfa-for-sensitive-actions")
@description("Sensitive actions need MFA in amr and an authentication at most ${MFA_MAX_AGE_SECONDS} s old.")
forbid (principal is ${NAMESPACE}::User, action in ${A}::"${SENSITIVE_GROUP}", resource)
unless {
  context has amr && context.amr.contains("mfa") &&
  context has auth_time && context has now &&
  context.auth_time <= context.now && context.now - context.auth_time <= ${MFA_MAX_AGE_SECONDS}
};

@id("platform.token-scope")
@description("A token scoped to a domain or project only reaches resources inside that scope.")
forbid (principal, action, resource)
when {
  (context has scope_project && !(resource in context.scope_project)) ||
  (context has scope_domain && !(resource in context.scope_domain))
};

@id("platform.data-classification")
@description("Restricted data needs the restricted clearance.")
forbid (principal, action, resource)
when { resource has classification && resource.classification == "restricted" }
unless { principal has clearances && principal.clearances.contains("restricted") };

@id("platform.self-service-passkeys")
@description("A user lists, reads and removes their own passkeys (removal is sensitive: it still needs fresh MFA).")
permit (
  principal is ${NAMESPACE}::User,
  action in [${A}::"webauthncredential.list", ${A}::"webauthncredential.read", ${A}::"webauthncredential.delete"],
  resource
)
when { resource in principal };

@id("platform.service-account-network")
@description("A service account pinned to a network only acts from inside it.")
forbid (principal is ${NAMESPACE}::ServiceAccount, action, resource)
when { principal has network }
unless { context has ip && context.ip.isInRange(principal.network) };
`

/** Role templates: `permit (principal in ?principal, action in role group, resource in ?resource)`. */
export function roleTemplateText(role: Role): string {
  return `@id("role:${role}")
permit (principal in ?principal, action in ${A}::"${roleGroup(role)}", resource in ?resource);`
}

export const ROLE_TEMPLATES_TEXT = ROLES.map(roleTemplateText).join('\n\n')

let platformCache: PolicySource[] | undefined
export function platformPolicies(): PolicySource[] {
  platformCache ??= parsePolicySetText(PLATFORM_POLICIES_TEXT).map(({ id, json }) => ({ id, json }))
  return platformCache
}

const templates = new Map<Role, PolicyJson>()
function roleTemplate(role: Role): PolicyJson {
  let t = templates.get(role)
  if (!t) {
    const answer = cedar.templateToJson(roleTemplateText(role))
    if (answer.type !== 'success') throw new UnsupportedPolicyError(`role template ${role}`)
    t = answer.json as unknown as PolicyJson
    templates.set(role, t)
  }
  return t
}

export interface ScopeRef {
  type: 'Tenant' | 'Domain' | 'Project'
  id: string
}

export interface BindingGroup {
  tenant: string
  role: Role
  scope: ScopeRef
}

/** The RoleBinding entity standing for "role R at scope S" in a tenant. */
export function bindingGroupId(g: BindingGroup): string {
  return `${g.tenant}/${g.scope.type}/${g.scope.id}/${g.role}`
}

export const bindingGroupUid = (g: BindingGroup) => ({
  type: `${NAMESPACE}::RoleBinding`,
  id: bindingGroupId(g),
})

/** A binding at the platform tenant's own scope reaches every tenant. */
export function isPlatformWide(g: BindingGroup) {
  return g.tenant === PLATFORM_TENANT && g.scope.type === 'Tenant' && g.scope.id === PLATFORM_TENANT
}

/** Links the role template for one binding group (static policy with the slots filled in). */
export function bindingPolicy(g: BindingGroup): PolicySource {
  const t = roleTemplate(g.role)
  const fill = (entity: { type: string; id: string } | undefined): JsonNode =>
    entity ? { op: 'in', entity } : { op: 'All' }
  const json: PolicyJson = {
    ...t,
    principal: fill(bindingGroupUid(g)),
    resource: fill(
      isPlatformWide(g) ? undefined : { type: `${NAMESPACE}::${g.scope.type}`, id: g.scope.id },
    ),
    annotations: { id: `binding:${bindingGroupId(g)}` },
  }
  return { id: `binding:${bindingGroupId(g)}`, json }
}

/** Text form of a linked binding policy (for explanations and for cedar-wasm as a peer). */
export function bindingPolicyText(g: BindingGroup): string {
  const answer = cedar.policyToText(bindingPolicy(g).json as unknown as cedar.PolicyJson)
  if (answer.type !== 'success') throw new UnsupportedPolicyError('binding policy to text')
  return answer.text
}

export { compileText }
