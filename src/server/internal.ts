import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import Fastify, { type FastifyInstance, LogController } from 'fastify'
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import {
  enterOutboundContext,
  newSpanId,
  newTraceId,
  parseTraceparent,
} from '../core/correlation.ts'
import { problems } from '../core/errors.ts'
import { componentId } from '../pki/spiffe.ts'
import {
  enforcePeerPolicy,
  type IdentitySource,
  mtlsContextOptions,
  mtlsServerOptions,
  type PeerPolicy,
  type RevocationChecker,
  type TlsMinVersion,
  verifyPeer,
} from '../pki/tls-policy.ts'
import type { InternalApi } from './component.ts'
import { correlationIdOf } from './observability.ts'
import { installProblemHandlers, sendProblem } from './problem-handler.ts'
import { peerServerName } from './topology.ts'

/**
 * The internal listener of a `dflare serve` process: one mutual-TLS port shared by the
 * components of the process that answer other components (audit, authz, iam).
 *
 * - The client names the component it calls in the TLS server name; the listener presents that
 *   component's service certificate (so the client can check it is talking to, say, authz) and
 *   admits only the component's declared callers. A connection that names no local component,
 *   presents no certificate, a certificate of another CA, an expired or revoked one, or an
 *   identity not on the allow-list is closed before any request is read.
 * - Each request is checked again (its route must belong to the component the connection was
 *   opened for, and the peer must still pass), so a connection opened for audit cannot call iam.
 * - Open connections are re-checked after every CRL refresh: a revoked peer's kept-alive
 *   connection does not outlive its revocation. Certificates rotate without a restart.
 */
export interface InternalListenerOptions {
  apis: readonly InternalApi[]
  /** The service identity of each served component. */
  identities: ReadonlyMap<string, IdentitySource>
  revocation: RevocationChecker & { onUpdate(fn: () => void): () => void }
  trustDomain: string
  minVersion: TlsMinVersion
  bodyLimit: number
  log: Logger
  metrics: Registry
}

export interface InternalListener {
  app: FastifyInstance
  listen(url: URL): Promise<URL>
  close(): Promise<void>
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The calling component's SPIFFE id (internal listener only). */
    peerId?: string
  }
}

export async function createInternalListener(
  options: InternalListenerOptions,
): Promise<InternalListener> {
  const { apis, identities, trustDomain, minVersion } = options
  if (apis.length === 0) throw new Error('the internal listener needs at least one component')
  const log = options.log.child({ listener: 'internal' })
  const byServerName = new Map<string, InternalApi>()
  const policies = new Map<string, PeerPolicy>()
  const contexts = new Map<string, tls.SecureContext>()
  const unsubscribe: (() => void)[] = []
  for (const api of apis) {
    const identity = identities.get(api.component)
    if (!identity) throw new Error(`no service identity for ${api.component}`)
    const name = peerServerName(api.component, trustDomain)
    byServerName.set(name, api)
    policies.set(api.component, {
      allowed: new Set(api.callers.map((c) => componentId(trustDomain, c))),
      revocation: options.revocation,
    })
    contexts.set(
      name,
      tls.createSecureContext(mtlsContextOptions(identity.current(), { minVersion })),
    )
  }
  const first = identities.get(apis[0]!.component)!
  const componentOf = (socket: tls.TLSSocket) => {
    const servername = (socket as tls.TLSSocket & { servername?: string | false }).servername
    return typeof servername === 'string' ? byServerName.get(servername) : undefined
  }

  const refused = new Counter({
    name: 'dflare_internal_connections_refused_total',
    help: 'Connections and requests refused on the internal mTLS listener, by reason',
    labelNames: ['reason'] as const,
    registers: [options.metrics],
  })

  const app = Fastify({
    https: {
      ...mtlsServerOptions(first.current(), { minVersion }),
      SNICallback: (
        servername: string,
        cb: (err: Error | null, ctx?: tls.SecureContext) => void,
      ) => {
        const ctx = contexts.get(servername)
        if (ctx) cb(null, ctx)
        else cb(new Error('unknown server name'))
      },
    },
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    // The caller's correlation id (when well-formed) names this call in our log lines too.
    genReqId: correlationIdOf,
    requestIdLogLabel: 'correlationId',
    bodyLimit: options.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: true,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  }) as unknown as FastifyInstance
  // Longer than the clients' idle timeout, so a client never reuses a connection being closed.
  app.server.keepAliveTimeout = 75_000

  const server = app.server as unknown as tls.Server
  const enforcer = enforcePeerPolicy(
    server,
    (socket) => {
      const api = componentOf(socket)
      return api ? policies.get(api.component) : undefined
    },
    (reason, socket) => {
      refused.inc({ reason })
      const cert = socket.getPeerCertificate?.(false)
      log.warn(
        {
          reason,
          component: componentOf(socket)?.component,
          peer: cert?.subjectaltname?.slice(0, 256),
          remoteAddress: socket.remoteAddress,
        },
        'internal connection refused',
      )
    },
  )
  // Handshake failures (no certificate, another CA, expired, TLS < 1.2, unknown server name).
  server.on('tlsClientError', (err: Error & { code?: string }) => {
    refused.inc({ reason: 'handshake' })
    log.info({ code: err.code, err: err.message }, 'internal TLS handshake refused')
  })
  unsubscribe.push(options.revocation.onUpdate(() => enforcer.recheck()))
  for (const api of apis) {
    const identity = identities.get(api.component)!
    unsubscribe.push(
      identity.onChange((next) => {
        contexts.set(
          peerServerName(api.component, trustDomain),
          tls.createSecureContext(mtlsContextOptions(next, { minVersion })),
        )
        if (identity === first) server.setSecureContext(mtlsContextOptions(next, { minVersion }))
      }),
    )
  }

  installProblemHandlers(app)
  // Calls this component makes on the caller's behalf (e.g. iam recording an event) carry the
  // same correlation id and the caller's trace.
  app.addHook('onRequest', async (request) => {
    const trace = parseTraceparent(request.headers.traceparent)
    enterOutboundContext({
      correlationId: request.id,
      traceparent: () =>
        `00-${trace?.traceId ?? newTraceId()}-${newSpanId()}-${trace?.flags ?? '01'}`,
    })
  })
  for (const api of apis) {
    const policy = policies.get(api.component)!
    await app.register(
      async (scope) => {
        scope.addHook('onRequest', async (request, reply) => {
          const socket = request.raw.socket as tls.TLSSocket
          const check =
            componentOf(socket) === api ? verifyPeer(socket, policy) : { ok: false as const }
          if (!check.ok) {
            refused.inc({ reason: 'request_not_allowed' })
            return sendProblem(request, reply, problems.forbidden('Not allowed on this connection'))
          }
          request.peerId = check.id.uri
        })
        await api.routes(scope)
      },
      { prefix: `/internal/v1/${api.component}` },
    )
  }

  return {
    app,
    async listen(url) {
      await app.listen({
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: Number(url.port || 443),
      })
      const address = app.server.address() as AddressInfo
      const host = url.hostname
      return new URL(`https://${host}:${address.port}`)
    },
    async close() {
      for (const u of unsubscribe.splice(0)) u()
      await app.close()
    },
  }
}
