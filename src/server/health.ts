import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import { problems } from '../core/errors.ts'
import { sendProblem } from './problem-handler.ts'

export interface Readiness {
  /** Throws or returns a reason string when not ready. */
  check(): Promise<string | undefined>
}

/** `/healthz` (process alive), `/readyz` (dependencies usable), `/metrics` (Prometheus). */
export function healthRoutes(
  app: FastifyInstance,
  deps: { readiness: Readiness; metrics: Registry },
) {
  app.get('/healthz', { logLevel: 'warn' }, async () => ({ status: 'ok' }))

  app.get('/readyz', { logLevel: 'warn' }, async (request, reply) => {
    let reason: string | undefined
    try {
      reason = await deps.readiness.check()
    } catch {
      reason = 'dependency check failed'
    }
    if (reason) return sendProblem(request, reply, problems.unavailable(`Not ready: ${reason}`))
    return { status: 'ready' }
  })

  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    reply.type(deps.metrics.contentType)
    return deps.metrics.metrics()
  })
}
