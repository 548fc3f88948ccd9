import type { Component, Runtime } from '../server/component.ts'
import { authzRoutes } from './routes.ts'
import { type AuthzService, createAuthzService } from './service.ts'

/**
 * The authorization component. Other components receive `service.pdp` (the Pdp contract) and
 * `service.writer` (the EntityWriter contract) from the composition root.
 */
export function createAuthz(
  rt: Runtime,
  settings: { consistency: 'strong' | 'notify'; recentRequests: number },
): Component & { service: AuthzService } {
  const service = createAuthzService({
    db: rt.db,
    clock: rt.clock,
    log: rt.log.child({ component: 'authz' }),
    consistency: settings.consistency,
    recentRequests: settings.recentRequests,
  })
  return {
    name: 'authz',
    service,
    routes: (app) => authzRoutes(app, { pdp: service.pdp }),
    start: () => service.start(),
    stop: () => service.stop(),
  }
}
