import type { FastifyInstance, FastifyRequest } from 'fastify'
import { problems } from '../core/errors.ts'
import { type CertificateRecord, REVOCATION_REASONS, type RevocationReason } from './inventory.ts'
import { verifyRenewalProof } from './renewal.ts'
import type { Caller, PkiService } from './service.ts'

/**
 * HTTP surface of the PKI.
 *
 * - `pkiPublicRoutes`: the distribution point, unauthenticated like any CRL/AIA endpoint
 *   (everything it serves is signed): `GET /pki/crl` (DER), `GET /pki/ca` (intermediate + root
 *   PEM), and `POST /pki/renew` (self-renewal authenticated by proof of possession).
 * - `pkiRoutes`: the operator API under `/api/v1/pki`; the gateway authenticates and
 *   authorizes, and hands the caller over through `deps.caller`. It never returns private
 *   keys: issuance takes a CSR.
 */
export async function pkiPublicRoutes(app: FastifyInstance, deps: { service: PkiService }) {
  const { service } = deps
  app.get('/pki/crl', async (req, reply) => {
    const crl = await service.crl()
    const pem = (req.query as { format?: string }).format === 'pem'
    reply
      .header('cache-control', 'no-cache')
      .header('last-modified', crl.thisUpdate.toUTCString())
      .header('expires', crl.nextUpdate.toUTCString())
      .type(pem ? 'application/x-pem-file' : 'application/pkix-crl')
    return pem ? crl.pem : crl.der
  })
  app.get('/pki/ca', async (_req, reply) => {
    reply.type('application/pem-certificate-chain').header('cache-control', 'max-age=300')
    return service.ca.chainPem
  })
  app.post(
    '/pki/renew',
    {
      bodyLimit: 65_536,
      schema: {
        body: {
          type: 'object',
          required: ['csr', 'proof'],
          additionalProperties: false,
          properties: {
            csr: { type: 'string', maxLength: 16_384 },
            proof: { type: 'string', maxLength: 16_384 },
          },
        },
      },
    },
    async (req) => {
      const { csr, proof } = req.body as { csr: string; proof: string }
      const leaf = await verifyRenewalProof(service.ca, proof, csr, new Date())
      const issued = await service.renewHeld(leaf, csr)
      return {
        chain: issued.chainPem,
        ca: service.ca.rootPem,
        certificate: view(issued.certificate),
      }
    },
  )
}

export interface PkiRoutesDeps {
  service: PkiService
  /** The authenticated caller, as resolved by the gateway; throw (401/403) when there is none. */
  caller: (req: FastifyRequest) => Caller
}

/** The public view of an inventory entry (no PEM unless asked for one certificate). */
function view(c: CertificateRecord, withPem = false) {
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

const SERIAL = { type: 'string', pattern: '^[0-9a-fA-F]{1,40}$' } as const

export async function pkiRoutes(app: FastifyInstance, deps: PkiRoutesDeps) {
  const { service } = deps
  const scoped = (req: FastifyRequest, tenant: string | undefined) => {
    const caller = deps.caller(req)
    if (caller.tenant !== 'platform') return { caller, tenant: caller.tenant }
    return { caller, tenant }
  }

  app.get('/api/v1/pki/ca', async (req) => {
    deps.caller(req)
    return {
      root: service.ca.rootPem,
      intermediate: service.ca.intermediate.toString('pem'),
      chain: service.ca.chainPem,
      intermediateNotAfter: service.ca.intermediate.notAfter.toISOString(),
      trustDomain: service.trustDomain,
    }
  })

  app.get(
    '/api/v1/pki/certificates',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { enum: ['valid', 'revoked', 'expired'] },
            kind: { enum: ['server', 'component', 'workload'] },
            tenant: { type: 'string', maxLength: 63 },
            limit: { type: 'integer', minimum: 1, maximum: 5000 },
          },
        },
      },
    },
    async (req) => {
      const q = req.query as { status?: 'valid'; kind?: 'server'; tenant?: string; limit?: number }
      const { tenant } = scoped(req, q.tenant)
      const items = await service.list({ ...q, tenant })
      return { items: items.map((c) => view(c)) }
    },
  )

  app.get(
    '/api/v1/pki/certificates/:serial',
    { schema: { params: { type: 'object', properties: { serial: SERIAL } } } },
    async (req) => {
      const { caller } = scoped(req, undefined)
      const c = await service.get((req.params as { serial: string }).serial)
      if (!c || (caller.tenant !== 'platform' && c.tenant !== caller.tenant))
        throw problems.notFound()
      return view(c, true)
    },
  )

  app.post(
    '/api/v1/pki/certificates',
    {
      schema: {
        body: {
          type: 'object',
          required: ['identity', 'csr'],
          additionalProperties: false,
          properties: {
            identity: { type: 'string', maxLength: 2048 },
            csr: { type: 'string', maxLength: 16_384 },
            ttlSeconds: { type: 'integer', minimum: 300, maximum: 30 * 86_400 },
          },
        },
      },
    },
    async (req, reply) => {
      const caller = deps.caller(req)
      const b = req.body as { identity: string; csr: string; ttlSeconds?: number }
      const issued = await service.issueFromCsr(
        { identity: b.identity, csr: b.csr, ttlMs: b.ttlSeconds ? b.ttlSeconds * 1000 : undefined },
        caller,
      )
      reply.code(201)
      return {
        certificate: view(issued.certificate),
        chain: issued.chainPem,
        ca: service.ca.rootPem,
      }
    },
  )

  app.post(
    '/api/v1/pki/certificates/:serial/renew',
    {
      schema: {
        params: { type: 'object', properties: { serial: SERIAL } },
        body: {
          type: 'object',
          required: ['csr'],
          additionalProperties: false,
          properties: { csr: { type: 'string', maxLength: 16_384 } },
        },
      },
    },
    async (req, reply) => {
      const caller = deps.caller(req)
      const { serial } = req.params as { serial: string }
      const issued = await service.renew(serial, { csr: (req.body as { csr: string }).csr }, caller)
      reply.code(201)
      return {
        certificate: view(issued.certificate),
        chain: issued.chainPem,
        ca: service.ca.rootPem,
      }
    },
  )

  app.post(
    '/api/v1/pki/certificates/:serial/revoke',
    {
      schema: {
        params: { type: 'object', properties: { serial: SERIAL } },
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { reason: { enum: [...REVOCATION_REASONS] } },
        },
      },
    },
    async (req) => {
      const caller = deps.caller(req)
      const { serial } = req.params as { serial: string }
      const reason = ((req.body as { reason?: RevocationReason } | undefined)?.reason ??
        'unspecified') as RevocationReason
      return view(await service.revoke(serial, reason, caller))
    },
  )

  app.get('/api/v1/pki/crl', async (req) => {
    deps.caller(req)
    const crl = await service.crl()
    return {
      number: crl.number,
      thisUpdate: crl.thisUpdate.toISOString(),
      nextUpdate: crl.nextUpdate.toISOString(),
      pem: crl.pem,
    }
  })
}
