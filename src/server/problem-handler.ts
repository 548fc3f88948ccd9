import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { type FieldError, Problem, problems } from '../core/errors.ts'

const PROBLEM_TYPE = 'application/problem+json; charset=utf-8'

/** Framework errors whose status and a fixed, input-free description are safe to show. */
const FRAMEWORK: Record<string, { status: number; detail: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, detail: 'The request body is too large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, detail: 'The content type is not supported' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, detail: 'Content-Length is invalid' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, detail: 'The JSON body is empty' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, detail: 'The body is not valid JSON' },
  FST_ERR_BAD_URL: { status: 400, detail: 'The URL is malformed' },
  FST_ERR_ASYNC_CONSTRAINT: { status: 400, detail: 'The request is malformed' },
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
}

function validationProblem(err: FastifyError): Problem {
  const errors: FieldError[] = (err.validation ?? []).map((v) => {
    const missing = (v.params as { missingProperty?: string }).missingProperty
    const extra = (v.params as { additionalProperty?: string }).additionalProperty
    const base = `${err.validationContext ?? 'body'}${v.instancePath.replaceAll('/', '.')}`
    const field = missing ? `${base}.${missing}` : extra ? `${base}.${extra}` : base
    const message = extra ? 'is not an allowed property' : (v.message ?? 'is invalid')
    return { field, message }
  })
  const first = errors[0]
  return problems.badRequest(first ? `${first.field} ${first.message}` : 'Invalid request', errors)
}

/** Turns any error into RFC 9457 problem+json; unknown errors become an opaque 500. */
export function toProblem(err: unknown): Problem {
  if (err instanceof Problem) return err
  const e = err as FastifyError
  if (e?.validation) return validationProblem(e)
  if (e?.code && FRAMEWORK[e.code]) {
    const { status, detail } = FRAMEWORK[e.code]!
    return new Problem({ status, title: TITLES[status] ?? 'Bad Request', detail })
  }
  // JSON syntax errors from the body parser and prototype-poisoning refusals.
  if (e?.statusCode === 400 && (err instanceof SyntaxError || e.code === undefined))
    return problems.badRequest('The body is not valid JSON')
  if (e?.statusCode === 429) return problems.tooManyRequests(60)
  if (e?.statusCode === 503) return problems.unavailable()
  return problems.internal()
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: Problem) {
  for (const [k, v] of Object.entries(problem.headers)) reply.header(k, v)
  return reply
    .code(problem.status)
    .type(PROBLEM_TYPE)
    .send(JSON.stringify({ ...problem.toJSON(), correlation_id: request.id }))
}

export function installProblemHandlers(app: FastifyInstance) {
  app.setErrorHandler((err, request, reply) => {
    const problem = toProblem(err)
    if (problem.status >= 500) request.log.error({ err }, 'request failed')
    else request.log.info({ status: problem.status, problem: problem.type }, 'request rejected')
    return sendProblem(request, reply, problem)
  })
  app.setNotFoundHandler((request, reply) => sendProblem(request, reply, problems.notFound()))
}
