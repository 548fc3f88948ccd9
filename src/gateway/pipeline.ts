import { createHash } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Pdp } from '../authz/contract.ts'
import type { Clock } from '../core/clock.ts'
import { enterOutboundContext } from '../core/correlation.ts'
import { holdNextRead, type ReadHold } from '../core/db/held-read.ts'
import type { Db } from '../core/db/index.ts'
import { problems } from '../core/errors.ts'
import { type EventSink, isAuditFailure, type SecurityEvent } from '../core/events.ts'
import { enterRequest } from '../core/fresh-read.ts'
import { enterOptimistic, type OptimisticRequest } from '../core/revisions.ts'
import { outboundTraceparent } from '../server/observability.ts'
import { sendProblem, toProblem } from '../server/problem-handler.ts'
import { authenticateBearer, PLATFORM_REALM, type TokenAuthority } from './authenticate.ts'
import { authorizationRequest } from './cedar-request.ts'
import { fingerprint, parseIdempotencyKey, remember, replayed } from './idempotency.ts'
import type { Principal } from './principal.ts'
import { ReplayCache } from './replay-cache.ts'
import type { AnyApiRoute, ApiResult, CallContext, ResourceRef } from './route.ts'

export const API_PREFIX = '/api/v1'

export interface RateLimits {
  perPrincipal: { max: number; windowMs: number }
  perTenant: { max: number; windowMs: number }
  /** Requests that fail authentication, per source IP. */
  unauthenticated: { max: number; windowMs: number }
}

export interface GatewayDeps {
  db: Db
  authority: TokenAuthority
  pdp: Pdp
  events: EventSink
  clock: Clock
  tenantExists(tenant: string): Promise<boolean>
  limits: RateLimits
  /** Service identity from a verified mTLS client certificate (set when the PKI is enabled). */
  identifyPeer?(socket: TLSSocket): Principal | undefined
  /** Serve reads optimistically (default true); false checks the revisions first, like writes. */
  optimisticReads?: boolean
  /** Told when an optimistic read failed validation and was redone strictly (a metric). */
  onOptimisticRetry?(): void
}

type Step = 'authentication' | 'authorization'

interface RequestState {
  route: AnyApiRoute
  started: number
  tenant: string
  /** Set for reads served optimistically (validated before the response leaves). */
  optimistic?: OptimisticRequest
  principal?: Principal
  resource?: ResourceRef
  decision?: { determining: string[]; reason: string }
  /** Set for reads: the handler's first read stays open for the request's audit event. */
  hold?: ReadHold
}

declare module 'fastify' {
  interface FastifyRequest {
    dflare?: RequestState
  }
  interface FastifyContextConfig {
    /** Set by the gateway on every /api/v1 route; routes without it are refused at startup. */
    dflareRoute?: AnyApiRoute
  }
}

/**
 * A read commits with its audit event (a held read, core/db/held-read.ts) while at most this many
 * reads are being handled at once: then each commit is the only one in flight, or nearly, and the
 * event costs no round trip of its own. Under more load, group commit shares one WAL flush among
 * many events and costs less: the read commits alone and its event joins the next group commit.
 */
export const HOLD_READS_UP_TO = 8

/** Raised when the audit log cannot record: the request fails with 503 and nothing changes. */
class AuditUnavailable extends Error {
  override name = 'AuditUnavailable'
}

/**
 * Refuses, at startup, any route under /api/v1 that was not declared through the gateway (and so
 * would bypass authentication, authorization and audit). Install before any component's routes.
 */
export function guardApiRoutes(app: FastifyInstance) {
  app.addHook('onRoute', (route) => {
    const urls = Array.isArray(route.url) ? route.url : [route.url]
    if (
      urls.some((u) => u === API_PREFIX || u.startsWith(`${API_PREFIX}/`)) &&
      !route.config?.dflareRoute
    )
      throw new Error(
        `route ${route.method} ${route.url} has no declared action: register it through the gateway`,
      )
  })
}

function actorOf(p: Principal | undefined): SecurityEvent['actor'] {
  if (!p) return { kind: 'anonymous', id: 'anonymous' }
  return { kind: p.kind === 'service' ? 'service' : 'user', id: p.subject, realm: p.realm }
}

/** SHA-256 of the verified TLS client certificate, for certificate-bound tokens (RFC 8705). */
function clientCertSha256(request: FastifyRequest): Buffer | undefined {
  const socket = request.raw.socket as TLSSocket
  if (!socket.authorized) return undefined
  const cert = socket.getPeerCertificate?.()
  return cert?.raw ? createHash('sha256').update(cert.raw).digest() : undefined
}

/**
 * The policy enforcement point. Every declared route runs: authenticate (onRequest, before the
 * body is even parsed) → rate limits → tenant and resource resolution → PDP decision → handler
 * (writes in one transaction with their audit event) → one audit event per request, whatever the
 * outcome. Every error path denies; an audit failure is a 503.
 */
export async function registerApi(
  app: FastifyInstance,
  deps: GatewayDeps,
  routes: readonly AnyApiRoute[],
) {
  const dpopReplay = new ReplayCache(100_000)
  let readsInFlight = 0

  await app.register(
    async (api) => {
      await api.register(rateLimit, { global: false })
      const principalLimit = api.createRateLimit({
        max: deps.limits.perPrincipal.max,
        timeWindow: deps.limits.perPrincipal.windowMs,
        keyGenerator: (r) => `p:${r.dflare?.principal?.uid.type}:${r.dflare?.principal?.uid.id}`,
      })
      const tenantLimit = api.createRateLimit({
        max: deps.limits.perTenant.max,
        timeWindow: deps.limits.perTenant.windowMs,
        keyGenerator: (r) => `t:${r.dflare?.tenant}`,
      })
      const anonymousLimit = api.createRateLimit({
        max: deps.limits.unauthenticated.max,
        timeWindow: deps.limits.unauthenticated.windowMs,
        keyGenerator: (r) => `ip:${r.ip}`,
      })

      const record = async (
        request: FastifyRequest,
        event: Omit<
          SecurityEvent,
          'type' | 'tenant' | 'actor' | 'correlationId' | 'sourceIp' | 'userAgent'
        >,
        status: number,
        tx?: Parameters<EventSink['record']>[1],
      ) => {
        const s = request.dflare!
        try {
          const complete: SecurityEvent = {
            type: 'api.request',
            tenant: s.tenant,
            actor: actorOf(s.principal),
            correlationId: request.id,
            sourceIp: request.ip,
            userAgent: request.headers['user-agent']?.slice(0, 256),
            ...event,
            details: {
              method: request.method,
              route: `${API_PREFIX}${s.route.url}`,
              status,
              latencyMs: Math.round((performance.now() - s.started) * 100) / 100,
              ...(s.decision ? { policies: s.decision.determining } : {}),
              ...event.details,
            },
          }
          // A read commits with its event: one transaction, one commit, no round trip of its own.
          const hold = s.hold
          s.hold = undefined
          if (!tx && hold && (await hold.commitWith((held) => deps.events.record(complete, held))))
            return
          await deps.events.record(complete, tx)
        } catch (err) {
          request.log.error({ err }, 'audit write failed')
          throw new AuditUnavailable('audit unavailable')
        }
      }

      /** Who is calling: a verified mTLS service identity or a bearer token (401 otherwise). */
      const authenticate = async (request: FastifyRequest) => {
        const s = request.dflare!
        const now = Math.floor(deps.clock.now().getTime() / 1000)
        s.principal =
          deps.identifyPeer?.(request.raw.socket as TLSSocket) ??
          (await authenticateBearer(
            deps.authority,
            request.headers.authorization,
            s.tenant,
            {
              method: request.method,
              url: `${request.protocol}://${request.host}${request.url.split('?')[0]}`,
              dpop: typeof request.headers.dpop === 'string' ? request.headers.dpop : undefined,
              clientCertSha256: clientCertSha256(request),
              remember: (jti, exp) => dpopReplay.add(jti, exp),
              now,
            },
            now,
          ))
      }

      /** Tenant, resource and the PDP's decision (404 / 403 otherwise). */
      const authorize = async (request: FastifyRequest) => {
        const s = request.dflare!
        const principal = s.principal!
        // A tenant principal never learns whether another tenant or its resources exist.
        if (principal.realm !== PLATFORM_REALM && principal.realm !== s.tenant)
          throw problems.notFound()
        if (!(await deps.tenantExists(s.tenant))) throw problems.notFound()
        const found = await s.route.resource({
          params: request.params,
          query: request.query,
          body: request.body,
          tenant: s.tenant,
          principal,
        })
        if (!found || found.tenant !== s.tenant) throw problems.notFound()
        s.resource = found
        const decision = await deps.pdp.decide(
          authorizationRequest(principal, s.route.action, found, request.ip),
        )
        s.decision = decision
        if (decision.decision !== 'allow')
          throw problems.forbidden(decision.reason, { policies: decision.determining })
      }

      /** Drops optimism and redoes every check up to `step` strictly (their refusals are final). */
      const redoStrictly = async (request: FastifyRequest, step: Step) => {
        request.dflare!.optimistic?.strict()
        await authenticate(request)
        if (step === 'authorization') await authorize(request)
      }

      /**
       * Runs one step's check; when it refuses an optimistic request, every check so far is redone
       * strictly, so a refusal is only ever given on fresh state (a cache behind a grant must not
       * deny, and a cache behind a revocation must not answer 404 instead of 401).
       */
      const checked = async (request: FastifyRequest, step: Step) => {
        try {
          await (step === 'authentication' ? authenticate : authorize)(request)
        } catch (err) {
          if (!request.dflare?.optimistic?.active) throw err
          await redoStrictly(request, step)
        }
      }

      /**
       * Runs a read handler. An optimistic request is validated before its result (or its error)
       * is used; when a cache was behind, every check is redone strictly and the handler again.
       */
      const readValidated = async (
        request: FastifyRequest,
        read: () => Promise<ApiResult>,
      ): Promise<ApiResult> => {
        const o = request.dflare!.optimistic
        o?.piggyback() // the handler's first transaction reads the revisions with its BEGIN
        let first: { value: ApiResult } | { err: unknown }
        try {
          first = { value: await read() }
        } catch (err) {
          first = { err }
        }
        if (o?.active && !(await o.validate())) {
          deps.onOptimisticRetry?.()
          // The checks below may wait for reads other requests started: nothing is held meanwhile.
          await request.dflare!.hold?.release()
          await redoStrictly(request, 'authorization')
          return read()
        }
        if ('err' in first) throw first.err
        return first.value
      }

      // Every failure (401, 403, 404, 400, 429, 5xx) is audited before the problem is sent.
      api.setErrorHandler(async (error, request, reply) => {
        let err: unknown = error
        // A failed read's event is recorded on its own: what it read is let go first.
        await request.dflare?.hold?.release()
        // An optimistic request's error (a 400, or the handler's own) only leaves once its checks
        // are confirmed: when a cache was behind, they are redone strictly and their refusal wins.
        const o = request.dflare?.optimistic
        if (o?.active && request.dflare?.principal && !(await o.validate())) {
          deps.onOptimisticRetry?.()
          try {
            await redoStrictly(
              request,
              request.dflare.resource ? 'authorization' : 'authentication',
            )
          } catch (refusal) {
            err = refusal
          }
        }
        const auditDown = err instanceof AuditUnavailable || isAuditFailure(err)
        let problem = auditDown
          ? problems.unavailable('The audit log is unavailable')
          : toProblem(err)
        const s = request.dflare
        if (s && !auditDown) {
          try {
            await record(
              request,
              {
                action: s.route.action,
                resource: s.resource
                  ? { type: s.resource.uid.type, id: s.resource.uid.id }
                  : undefined,
                outcome:
                  problem.status === 403 ? 'denied' : problem.status >= 500 ? 'error' : 'failure',
                reason: problem.status === 403 ? 'policy_denied' : problem.type.split('/').pop(),
              },
              problem.status,
            )
          } catch {
            problem = problems.unavailable('The audit log is unavailable')
          }
        }
        if (problem.status >= 500) request.log.error({ err }, 'api request failed')
        return sendProblem(request, reply, problem)
      })

      for (const route of routes) {
        const write = route.write ?? route.method !== 'GET'
        api.route({
          method: route.method,
          url: route.url,
          schema: {
            summary: route.summary,
            tags: route.tags,
            security: [{ bearer: [] }],
            ...route.schema,
          },
          config: { dflareRoute: route },
          onRequest: async (request) => {
            const tenant = (request.params as { tenant?: string }).tenant ?? PLATFORM_REALM
            request.dflare = { route, started: performance.now(), tenant }
            // Everything this request checks (revocations, realm state, authorization) need be
            // no older than its arrival: checks can share reads that started after it.
            enterRequest(request.dflare.started)
            // Reads are served optimistically: their checks use the caches without a revision
            // read, validated before the response leaves (core/revisions.ts). Writes check first.
            if (!write && deps.optimisticReads !== false)
              request.dflare.optimistic = enterOptimistic()
            // Calls to other components on its behalf carry its correlation id and trace.
            enterOutboundContext({
              correlationId: request.id,
              traceparent: () => outboundTraceparent(request),
            })
            try {
              await checked(request, 'authentication')
            } catch (err) {
              // `isAllowed` only means allow-listed; `isExceeded` is the verdict.
              const verdict = await anonymousLimit(request)
              if (!verdict.isAllowed && verdict.isExceeded)
                throw problems.tooManyRequests(Math.max(1, verdict.ttlInSeconds))
              throw err
            }
          },
          preHandler: async (request) => {
            for (const limit of [principalLimit, tenantLimit]) {
              const verdict = await limit(request)
              if (!verdict.isAllowed && verdict.isExceeded)
                throw problems.tooManyRequests(Math.max(1, verdict.ttlInSeconds))
            }
            await checked(request, 'authorization')
          },
          handler: async (request, reply) => {
            const s = request.dflare!
            const call: CallContext = {
              actor: actorOf(s.principal),
              correlationId: request.id,
              sourceIp: request.ip,
              userAgent: request.headers['user-agent'],
            }
            const base = {
              request,
              params: request.params,
              query: request.query,
              body: request.body,
              principal: s.principal!,
              tenant: s.tenant,
              resource: s.resource!,
              call,
            }
            const audited = (result: ApiResult) => ({
              action: route.action,
              resource: result.auditResource ?? {
                type: s.resource!.uid.type,
                id: s.resource!.uid.id,
              },
              outcome: 'success' as const,
              details: result.audit,
            })
            let result: ApiResult
            if (!write) {
              readsInFlight++
              try {
                if (deps.db.holdsReads && readsInFlight <= HOLD_READS_UP_TO) s.hold = holdNextRead()
                result = await readValidated(request, () =>
                  route.handler({
                    ...base,
                    principal: s.principal!,
                    resource: s.resource!,
                    tx: undefined,
                  }),
                )
                await record(request, audited(result), result.status ?? 200)
              } finally {
                readsInFlight--
              }
            } else {
              const key = parseIdempotencyKey(request.headers['idempotency-key'])
              result = await deps.db.transaction(async (tx) => {
                const scope = key && {
                  tenant: s.tenant,
                  principal: `${s.principal!.uid.type}:${s.principal!.uid.id}`,
                  key,
                  fingerprint: fingerprint(request.method, request.url, request.body),
                }
                const previous = scope ? await replayed(tx, scope) : undefined
                const r: ApiResult = previous
                  ? {
                      status: previous.status,
                      body: previous.body,
                      headers: { 'idempotent-replayed': 'true' },
                      audit: { idempotentReplay: true },
                    }
                  : await route.handler({ ...base, tx })
                const status = r.status ?? 200
                await record(request, audited(r), status, tx)
                if (scope && !previous) await remember(tx, scope, { status, body: r.body })
                return r
              })
            }
            for (const [k, v] of Object.entries(result.headers ?? {})) reply.header(k, v)
            reply.code(result.status ?? 200)
            return result.status === 204 ? reply.send() : reply.send(result.body ?? null)
          },
        })
      }
    },
    { prefix: API_PREFIX },
  )
}
