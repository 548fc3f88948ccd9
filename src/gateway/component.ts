import type { TLSSocket } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import { Counter } from 'prom-client'
import type { Pdp } from '../authz/contract.ts'
import type { Component, Runtime } from '../server/component.ts'
import type { TokenAuthority } from './authenticate.ts'
import { registerApi } from './pipeline.ts'
import type { Principal } from './principal.ts'
import type { AnyApiRoute } from './route.ts'

export interface GatewayWiring {
  authority: TokenAuthority
  pdp: Pdp
  tenantExists(tenant: string): Promise<boolean>
  routes: readonly AnyApiRoute[]
  identifyPeer?(socket: TLSSocket): Principal | undefined
}

const MINUTE = 60_000

/** The policy enforcement point in front of every /api/v1 route. */
export function createGateway(rt: Runtime, wiring: GatewayWiring): Component {
  const s = rt.config.gateway
  const retries = new Counter({
    name: 'dflare_gateway_optimistic_retries_total',
    help: 'Optimistic reads whose checks used state older than the database and were redone strictly',
    registers: [rt.metrics],
  })
  return {
    name: 'gateway',
    routes: (app: FastifyInstance) =>
      registerApi(
        app,
        {
          db: rt.db,
          events: rt.events,
          clock: rt.clock,
          authority: wiring.authority,
          pdp: wiring.pdp,
          tenantExists: wiring.tenantExists,
          identifyPeer: wiring.identifyPeer,
          optimisticReads: s.optimisticReads,
          onOptimisticRetry: () => retries.inc(),
          limits: {
            perPrincipal: { max: s.principalRate, windowMs: MINUTE },
            perTenant: { max: s.tenantRate, windowMs: MINUTE },
            unauthenticated: { max: s.unauthenticatedRate, windowMs: MINUTE },
          },
        },
        wiring.routes,
      ),
  }
}
