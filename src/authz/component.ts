import type { AnyApiRoute } from '../gateway/route.ts'
import type { Component, Runtime } from '../server/component.ts'
import { authzApiRoutes } from './api.ts'
import { type AuthzService, createAuthzService } from './service.ts'

/**
 * The authorization component. Other components receive `service.pdp` (the Pdp contract) and
 * `service.writer` (the EntityWriter contract) from the composition root.
 */
export function createAuthz(
  rt: Runtime,
  settings: { consistency: 'strong' | 'notify'; recentRequests: number },
): Component & { service: AuthzService; apiRoutes: AnyApiRoute[] } {
  const service = createAuthzService({
    db: rt.db,
    clock: rt.clock,
    log: rt.log.child({ component: 'authz' }),
    consistency: settings.consistency,
    recentRequests: settings.recentRequests,
    metrics: rt.metrics,
  })
  return {
    name: 'authz',
    service,
    apiRoutes: authzApiRoutes(service),
    start: () => service.start(),
    stop: () => service.stop(),
  }
}
