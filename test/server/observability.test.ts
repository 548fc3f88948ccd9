import assert from 'node:assert/strict'
import { test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { Registry } from 'prom-client'
import { createLogger } from '../../src/core/log.ts'
import { installObservability, requestLogger } from '../../src/server/observability.ts'

async function app(withRequestLogger: boolean) {
  const lines: Record<string, unknown>[] = []
  const log = createLogger({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) })
  const a = Fastify({
    loggerInstance: log,
    ...(withRequestLogger ? { childLoggerFactory: requestLogger } : {}),
  }) as unknown as FastifyInstance
  installObservability(a, new Registry())
  a.get('/x', async (request) => ({ trace: request.trace.traceId }))
  await a.ready()
  return { a, lines }
}

test('requestLogger binds the trace once to the request logger and request.trace', async () => {
  const { a, lines } = await app(true)
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const r = await a.inject({
    url: '/x',
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
  })
  assert.equal(r.statusCode, 200)
  assert.equal(r.json().trace, traceId)
  const done = lines.find((l) => l.msg === 'request completed')
  assert.equal(done?.traceId, traceId)
  await a.close()
})

test('a server whose request loggers were not made by requestLogger refuses requests', async () => {
  const { a } = await app(false)
  const r = await a.inject({ url: '/x' })
  assert.equal(r.statusCode, 500)
  await a.close()
})
