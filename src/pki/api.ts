import type { EntityRecord } from '../authz/contract.ts'
import { problems } from '../core/errors.ts'
import {
  type AnyApiRoute,
  defineRoute,
  type HandlerContext,
  type ResourceRef,
} from '../gateway/route.ts'
import { type CertificateRecord, REVOCATION_REASONS, type RevocationReason } from './inventory.ts'
import {
  type Caller,
  CERTIFICATE_ISSUE,
  CERTIFICATE_REVOKE,
  certificateUid,
  type PkiService,
} from './service.ts'
import { parseSpiffeId } from './spiffe.ts'

/**
 * `/api/v1/pki` (platform operators: the whole CA) and `/api/v1/tenants/{tenant}/pki`
 * (tenants: their own workload certificates), declared for the gateway, which authenticates,
 * authorizes (Cedar actions `certificate.list|read|issue|revoke`) and audits every call, and
 * runs writes in one transaction with its audit event. Issuance takes a CSR: the API never
 * generates or returns private keys. The service's own guards apply on top of the policy: a
 * tenant never obtains a platform identity or another tenant's.
 */
const PLATFORM = 'platform'
const SERIAL = { type: 'string', pattern: '^[0-9a-fA-F]{1,40}$' } as const
const TENANT = { type: 'string', pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' } as const

const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { enum: ['valid', 'revoked', 'expired'] },
    kind: { enum: ['server', 'component', 'workload'] },
    tenant: TENANT,
    limit: { type: 'integer', minimum: 1, maximum: 5000 },
  },
} as const

const issueBody = {
  type: 'object',
  required: ['identity', 'csr'],
  additionalProperties: false,
  properties: {
    identity: { type: 'string', maxLength: 2048 },
    csr: { type: 'string', maxLength: 16_384 },
    ttlSeconds: { type: 'integer', minimum: 300, maximum: 30 * 86_400 },
  },
} as const

const renewBody = {
  type: 'object',
  required: ['csr'],
  additionalProperties: false,
  properties: { csr: { type: 'string', maxLength: 16_384 } },
} as const

const revokeBody = {
  type: 'object',
  additionalProperties: false,
  properties: { reason: { enum: [...REVOCATION_REASONS] } },
} as const

/** The public view of an inventory entry (PEM only when one certificate is read). */
export function certificateView(c: CertificateRecord, withPem = false) {
  return {
    serial: c.serial,
    kind: c.kind,
    subject: c.subject,
    spiffeId: c.spiffeId,
    tenant: c.tenant,
    sans: c.sans,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    status: c.status,
    revokedAt: c.revokedAt?.toISOString() ?? null,
    revocationReason: c.revocationReason,
    renewedFrom: c.renewedFrom,
    fingerprintSha256: c.fingerprint,
    ...(withPem ? { pem: c.pem } : {}),
  }
}

function certificateRef(tenant: string, name: string): ResourceRef {
  const uid = certificateUid(tenant, name)
  const entity: EntityRecord = {
    uid,
    tenant,
    attrs: { tenant, name },
    parents: [{ type: 'Dflare::Tenant', id: tenant }],
  }
  return { uid, tenant, entities: [entity] }
}

function tenantRef(tenant: string): ResourceRef {
  return { uid: { type: 'Dflare::Tenant', id: tenant }, tenant }
}

function callerOf(ctx: HandlerContext<unknown, unknown, unknown>): Caller {
  return {
    actor: ctx.call.actor,
    tenant: ctx.principal.realm,
    principal: ctx.principal.uid,
    correlationId: ctx.call.correlationId,
    preAuthorized: true,
  }
}

export function pkiApiRoutes(service: PkiService): AnyApiRoute[] {
  /** An existing certificate as seen from `tenant` (platform sees the whole CA). */
  const existing = async (tenant: string, serial: string) => {
    const c = await service.get(serial)
    if (!c || (tenant !== PLATFORM && c.tenant !== tenant)) return undefined
    return { record: c, ref: certificateRef(tenant, c.serial) }
  }
  /** The identity to issue, as a resource of `tenant`; other tenants' identities are absent. */
  const identityRef = (tenant: string, identity: string) => {
    const id = parseSpiffeId(identity)
    if (!id || id.trustDomain !== service.trustDomain)
      throw problems.badRequest(
        `identity must be a SPIFFE id in trust domain ${service.trustDomain}`,
      )
    if (tenant !== PLATFORM && (id.kind !== 'tenant' || id.tenant !== tenant)) return undefined
    return certificateRef(tenant, id.uri)
  }

  const routes: AnyApiRoute[] = []
  for (const scope of ['platform', 'tenant'] as const) {
    const base = scope === 'platform' ? '/pki' : '/tenants/:tenant/pki'
    const tags = ['pki']
    const params = (extra: Record<string, unknown> = {}) => ({
      type: 'object',
      properties: { ...(scope === 'tenant' ? { tenant: TENANT } : {}), ...extra },
    })

    routes.push(
      defineRoute<
        { tenant?: string },
        { status?: 'valid'; kind?: 'server'; tenant?: string; limit?: number }
      >({
        method: 'GET',
        url: `${base}/certificates`,
        action: 'certificate.list',
        summary: 'List issued certificates (serial, subject, SANs, validity, status)',
        tags,
        schema: { params: params(), querystring: listQuery },
        resource: ({ tenant }) => tenantRef(tenant),
        handler: async ({ tenant, query }) => {
          const filter = { ...query, tenant: tenant === PLATFORM ? query.tenant : tenant }
          return { body: { items: (await service.list(filter)).map((c) => certificateView(c)) } }
        },
      }),
      defineRoute<{ tenant?: string; serial: string }>({
        method: 'GET',
        url: `${base}/certificates/:serial`,
        action: 'certificate.read',
        summary: 'One issued certificate, with its PEM',
        tags,
        schema: { params: params({ serial: SERIAL }) },
        resource: async ({ tenant, params: p }) => (await existing(tenant, p.serial))?.ref,
        handler: async ({ tenant, params: p }) => {
          const found = await existing(tenant, p.serial)
          if (!found) throw problems.notFound()
          return { body: certificateView(found.record, true) }
        },
      }),
      defineRoute<
        { tenant?: string },
        unknown,
        { identity: string; csr: string; ttlSeconds?: number }
      >({
        method: 'POST',
        url: `${base}/certificates`,
        action: CERTIFICATE_ISSUE,
        summary: 'Issue a certificate for a SPIFFE identity from a PKCS#10 CSR',
        tags,
        schema: { params: params(), body: issueBody },
        resource: ({ tenant, body }) => identityRef(tenant, body.identity),
        handler: async (ctx) => {
          const b = ctx.body
          const issued = await service.issueFromCsr(
            {
              identity: b.identity,
              csr: b.csr,
              ttlMs: b.ttlSeconds ? b.ttlSeconds * 1000 : undefined,
            },
            callerOf(ctx),
            ctx.tx,
          )
          return {
            status: 201,
            body: {
              certificate: certificateView(issued.certificate),
              chain: issued.chainPem,
              ca: service.ca.rootPem,
            },
            auditResource: {
              type: 'Dflare::Certificate',
              id: `${issued.certificate.tenant}/${issued.certificate.serial}`,
            },
            audit: { serial: issued.certificate.serial, identity: b.identity },
          }
        },
      }),
      defineRoute<{ tenant?: string; serial: string }, unknown, { csr: string }>({
        method: 'POST',
        url: `${base}/certificates/:serial/renew`,
        action: CERTIFICATE_ISSUE,
        summary: 'Issue a successor with the same identity for a new key (CSR)',
        tags,
        schema: { params: params({ serial: SERIAL }), body: renewBody },
        resource: async ({ tenant, params: p }) => (await existing(tenant, p.serial))?.ref,
        handler: async (ctx) => {
          const issued = await service.renew(
            ctx.params.serial,
            { csr: ctx.body.csr },
            callerOf(ctx),
            ctx.tx,
          )
          return {
            status: 201,
            body: {
              certificate: certificateView(issued.certificate),
              chain: issued.chainPem,
              ca: service.ca.rootPem,
            },
            audit: { serial: issued.certificate.serial, renewedFrom: ctx.params.serial },
          }
        },
      }),
      defineRoute<
        { tenant?: string; serial: string },
        unknown,
        { reason?: RevocationReason } | undefined
      >({
        method: 'POST',
        url: `${base}/certificates/:serial/revoke`,
        action: CERTIFICATE_REVOKE,
        summary: 'Revoke a certificate (published in the next CRL)',
        tags,
        schema: { params: params({ serial: SERIAL }), body: revokeBody },
        resource: async ({ tenant, params: p }) => (await existing(tenant, p.serial))?.ref,
        handler: async (ctx) => {
          const reason = ctx.body?.reason ?? 'unspecified'
          const rec = await service.revoke(ctx.params.serial, reason, callerOf(ctx), ctx.tx)
          return { body: certificateView(rec), audit: { reason } }
        },
      }),
    )
  }

  routes.push(
    defineRoute({
      method: 'GET',
      url: '/pki/ca',
      action: 'certificate.list',
      summary: 'The CA chain (root and online intermediate) and the trust domain',
      tags: ['pki'],
      resource: () => tenantRef(PLATFORM),
      handler: async () => ({
        body: {
          root: service.ca.rootPem,
          intermediate: service.ca.intermediate.toString('pem'),
          chain: service.ca.chainPem,
          intermediateNotAfter: service.ca.intermediate.notAfter.toISOString(),
          trustDomain: service.trustDomain,
        },
      }),
    }),
    defineRoute({
      method: 'GET',
      url: '/pki/crl',
      action: 'certificate.list',
      summary: 'The current CRL (also served unauthenticated at /pki/crl)',
      tags: ['pki'],
      resource: () => tenantRef(PLATFORM),
      handler: async () => {
        const crl = await service.crl()
        return {
          body: {
            number: crl.number,
            thisUpdate: crl.thisUpdate.toISOString(),
            nextUpdate: crl.nextUpdate.toISOString(),
            pem: crl.pem,
          },
        }
      },
    }),
  )
  return routes
}
