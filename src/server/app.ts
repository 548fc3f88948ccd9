import Fastify, { type FastifyInstance, LogController } from 'fastify'
import helmet from 'helmet'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { serverTlsOptions, type TlsMinVersion } from '../pki/tls-policy.ts'
import { healthRoutes, type Readiness } from './health.ts'
import { correlationIdOf, installObservability, requestLogger } from './observability.ts'
import { installProblemHandlers } from './problem-handler.ts'

export const HSTS_MAX_AGE = 31_536_000

/**
 * Security headers for every response, built once: the policy never varies by route (no CSP
 * nonces), and @fastify/helmet would build helmet, and parse this policy, again per request.
 */
const securityHeaders = helmet({
  hsts: { maxAge: HSTS_MAX_AGE, includeSubDomains: true, preload: false },
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", 'data:'],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
      objectSrc: ["'none'"],
      baseUri: ["'self'"],
    },
  },
  referrerPolicy: { policy: 'no-referrer' },
  crossOriginEmbedderPolicy: false,
})

export interface AppOptions {
  tls: { key: string; cert: string; ca?: string; minVersion: TlsMinVersion }
  /**
   * Ask clients for a certificate (mTLS service identities), verified against this CA bundle but
   * not required: callers without one authenticate with a bearer token instead.
   */
  clientCa?: string
  log: Logger
  metrics: Registry
  readiness: Readiness
  bodyLimit: number
}

/**
 * The HTTPS application shell: TLS policy, security headers (HSTS on every response), correlation
 * ids, problem+json errors, strict JSON bodies, metrics and health. Components add their routes.
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    https: {
      ...serverTlsOptions(options.tls),
      ...(options.clientCa
        ? { requestCert: true, rejectUnauthorized: false, ca: options.clientCa }
        : {}),
    },
    loggerInstance: options.log,
    childLoggerFactory: requestLogger,
    // Our own completion line (observability.ts) replaces Fastify's request logs.
    logController: new LogController({
      disableRequestLogging: true,
      requestIdLogLabel: 'correlationId',
    }),
    genReqId: correlationIdOf,
    requestIdHeader: false,
    bodyLimit: options.bodyLimit,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
  }) as unknown as FastifyInstance

  installObservability(app, options.metrics)
  app.addHook('onRequest', (request, reply, done) => {
    // Responses are per-principal: never cached by intermediaries unless a route says otherwise.
    reply.header('cache-control', 'no-store')
    securityHeaders(request.raw, reply.raw, (err) =>
      done(err === undefined || err instanceof Error ? err : new Error('security headers failed')),
    )
  })
  installProblemHandlers(app)
  healthRoutes(app, { readiness: options.readiness, metrics: options.metrics })
  return app
}
