import type { FastifyReply } from 'fastify'

/**
 * Hands the raw response to another HTTP stack (oidc-provider) while keeping the headers our hooks
 * already set on the reply: HSTS and the other security headers, the correlation id, no-store.
 */
export function hijackWithHeaders(reply: FastifyReply) {
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined && !reply.raw.headersSent)
      reply.raw.setHeader(name, value as string | string[] | number)
  reply.hijack()
}
