import type { AuthorizationRequest } from '../authz/contract.ts'
import { NAMESPACE, type Principal } from './principal.ts'
import type { ResourceRef } from './route.ts'

/** Plain IPv4 for IPv4-mapped IPv6 addresses, so Cedar `ip()` and CIDR ranges work as expected. */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip
}

/**
 * The Cedar request for one API call. Context: how the caller authenticated (`amr`, `auth_time`),
 * from where (`ip`), and the token's scope as an entity (`scope_domain`/`scope_project`) so the
 * platform policy can confine the call to it. The PDP adds `now`.
 */
export function authorizationRequest(
  principal: Principal,
  action: string,
  resource: ResourceRef,
  sourceIp: string,
): AuthorizationRequest {
  const context: Record<string, unknown> = {
    amr: principal.amr,
    ip: { __extn: { fn: 'ip', arg: normalizeIp(sourceIp) } },
    authenticated_via: principal.via,
  }
  if (principal.authTime !== undefined) context.auth_time = principal.authTime
  if (principal.scope.kind === 'domain')
    context.scope_domain = {
      __entity: { type: `${NAMESPACE}::Domain`, id: `${principal.realm}/${principal.scope.id}` },
    }
  if (principal.scope.kind === 'project')
    context.scope_project = {
      __entity: { type: `${NAMESPACE}::Project`, id: `${principal.realm}/${principal.scope.id}` },
    }
  return {
    principal: principal.uid,
    action: { type: `${NAMESPACE}::Action`, id: action },
    resource: resource.uid,
    context,
    entities: resource.entities,
  }
}
