import type { FastifyRequest } from 'fastify'
import type { Pdp } from '../authz/contract.ts'
import type { Component, Runtime } from '../server/component.ts'
import { createDrivers } from './drivers/index.ts'
import type { Driver } from './drivers/types.ts'
import { isolationRoutes } from './routes.ts'
import { type Caller, IsolationService } from './service.ts'
import type { DriverName } from './types.ts'

export interface IsolationComponentDeps {
  pdp: Pdp
  /** Layer 1 check: the tenant's realm exists (from iam). */
  realmExists: (tenant: string) => Promise<boolean>
  /** When given, the component mounts the isolation API (behind the gateway). */
  callerOf?: (req: FastifyRequest) => Caller
  /** Overrides the drivers chosen from the settings (tests). */
  drivers?: Record<DriverName, Driver>
}

export function createIsolation(
  rt: Runtime,
  deps: IsolationComponentDeps,
): Component & { service: IsolationService } {
  const config = rt.config.isolation
  const service = new IsolationService({
    db: rt.db,
    clock: rt.clock,
    events: rt.events,
    pdp: deps.pdp,
    realmExists: deps.realmExists,
    drivers: deps.drivers ?? createDrivers(config),
    config,
  })
  const callerOf = deps.callerOf
  return {
    name: 'isolation',
    service,
    routes: callerOf ? (app) => isolationRoutes(app, { service, callerOf }) : undefined,
  }
}
