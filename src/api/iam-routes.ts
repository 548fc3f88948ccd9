/**
 * The identity API (`/api/v1/tenants…`): tenants, domains, projects, users, groups, service
 * accounts, sessions, WebAuthn credentials and role bindings, declared as gateway routes
 * (authenticated, authorized by the PDP, audited). Writes run the IAM management functions inside
 * the gateway's transaction (see admin-tx.ts), so each one commits with exactly one `api.request`
 * audit event that carries the domain event. Every resource is looked up inside the tenant named
 * in the path only.
 */
import type { AnyApiRoute } from '../gateway/route.ts'
import { type IdentityRouteDeps, identityContext } from './iam/common.ts'
import { domainRoutes } from './iam/domains.ts'
import { groupRoutes } from './iam/groups.ts'
import { projectRoutes } from './iam/projects.ts'
import { roleBindingRoutes } from './iam/role-bindings.ts'
import { serviceAccountRoutes } from './iam/service-accounts.ts'
import { sessionRoutes } from './iam/sessions.ts'
import { tenantRoutes } from './iam/tenants.ts'
import { userRoutes } from './iam/users.ts'
import { webauthnCredentialRoutes } from './iam/webauthn.ts'

export type { IdentityRouteDeps }

/** Every identity route, one file per resource under ./iam/. */
export function identityRoutes(deps: IdentityRouteDeps): AnyApiRoute[] {
  const ctx = identityContext(deps)
  return [
    ...tenantRoutes(ctx),
    ...domainRoutes(ctx),
    ...projectRoutes(ctx),
    ...userRoutes(ctx),
    ...webauthnCredentialRoutes(ctx),
    ...groupRoutes(ctx),
    ...serviceAccountRoutes(ctx),
    ...sessionRoutes(ctx),
    ...roleBindingRoutes(ctx),
  ]
}
