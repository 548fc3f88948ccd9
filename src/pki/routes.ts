import type { FastifyInstance } from 'fastify'
import { certificateView } from './api.ts'
import { verifyRenewalProof } from './renewal.ts'
import type { PkiService } from './service.ts'

/**
 * The PKI's public endpoint, unauthenticated like any CRL distribution point (everything it
 * serves is signed): `GET /pki/crl` (DER; `?format=pem`), `GET /pki/ca` (intermediate + root
 * PEM), and `POST /pki/renew` (self-renewal authenticated by proof of possession). The
 * operator API under /api/v1 is declared for the gateway in api.ts.
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
        certificate: certificateView(issued.certificate),
      }
    },
  )
}
