import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { httpsRequest } from '../support/https.ts'
import { startTestServer, type TestServer } from '../support/server.ts'

const HSTS = 'max-age=31536000; includeSubDomains'
const SECRET = 'hunter2-super-secret-value'

describe('readiness while starting', () => {
  it('/readyz answers 503 until every component has started, then 200', async () => {
    let during: { status: number; detail: string } | undefined
    const server = await startTestServer(
      {},
      {
        beforeListen(plane) {
          // The last component to start asks while it starts: the listener is already open.
          plane.components.push({
            name: 'probe',
            async start() {
              const { port } = plane.app.server.address() as { port: number }
              const ca = await readFile(plane.caPath, 'utf8')
              const r = await httpsRequest(`https://127.0.0.1:${port}/readyz`, { ca })
              during = { status: r.status, detail: r.json().detail }
            },
          })
        },
      },
    )
    try {
      assert.deepEqual(during, { status: 503, detail: 'Not ready: starting' })
      const r = await httpsRequest(new URL('/readyz', server.url), { ca: server.caPem })
      assert.equal(r.status, 200)
    } finally {
      await server.close()
    }
  })
})

describe('HTTPS server shell', () => {
  let server: TestServer
  const get = (
    path: string,
    init: Parameters<typeof httpsRequest>[1] extends infer O ? Partial<O> : never = {},
  ) => httpsRequest(new URL(path, server.url), { ca: server.caPem, ...init })

  before(async () => {
    server = await startTestServer(
      { DFLARE_HTTP_REDIRECT_LISTEN: 'http://127.0.0.1:0', DFLARE_BODY_LIMIT: '2048' },
      {
        routes(app) {
          // Routes that misbehave or validate, to prove errors are problems that leak nothing.
          app.get('/test/boom', async () => {
            throw new Error(`database password is ${SECRET}`)
          })
          app.post(
            '/test/echo',
            {
              schema: {
                body: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['name'],
                  properties: { name: { type: 'string', maxLength: 10 } },
                },
              },
            },
            async (request) => request.body,
          )
        },
      },
    )
  })
  after(() => server.close())

  it('answers /healthz and /readyz', async () => {
    const h = await get('/healthz')
    assert.equal(h.status, 200)
    assert.deepEqual(h.json(), { status: 'ok' })
    const r = await get('/readyz')
    assert.equal(r.status, 200)
    assert.deepEqual(r.json(), { status: 'ready' })
  })

  it('sends HSTS and security headers on every response, errors included', async () => {
    const responses = [
      await get('/healthz'),
      await get('/does-not-exist'),
      await get('/metrics'),
      await get('/healthz', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{',
      }),
    ]
    for (const r of responses) {
      assert.equal(r.headers['strict-transport-security'], HSTS, `status ${r.status}`)
      assert.equal(r.headers['x-content-type-options'], 'nosniff')
      assert.equal(r.headers['referrer-policy'], 'no-referrer')
      assert.match(String(r.headers['content-security-policy']), /frame-ancestors 'none'/)
      assert.equal(r.headers['cache-control'], 'no-store')
    }
  })

  it('answers unknown routes with RFC 9457 problem+json', async () => {
    const r = await get('/nope')
    assert.equal(r.status, 404)
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
    const body = r.json()
    assert.equal(body.status, 404)
    assert.equal(body.title, 'Not Found')
    assert.ok(body.type)
    assert.equal(body.correlation_id, r.headers['x-correlation-id'])
  })

  it('echoes a well-formed X-Correlation-ID and logs it on the request line', async () => {
    const id = 'req-7f3c2a91-e2e'
    const r = await get('/test/boom', { headers: { 'x-correlation-id': id } })
    assert.equal(r.headers['x-correlation-id'], id)
    const lines = server.logs.filter((l) => l.correlationId === id)
    assert.ok(lines.length >= 2, 'the error line and the completion line carry the correlation id')
    assert.ok(lines.some((l) => l.msg === 'request failed'))
    assert.ok(lines.some((l) => l.msg === 'request completed' && l.status === 500))
  })

  it('replaces a malformed X-Correlation-ID with a generated one', async () => {
    for (const bad of ['short', 'has spaces in it!', 'x'.repeat(200), 'inj\\u000aected-line']) {
      const r = await get('/healthz', { headers: { 'x-correlation-id': bad } })
      const echoed = String(r.headers['x-correlation-id'])
      assert.notEqual(echoed, bad)
      assert.match(echoed, /^[0-9a-f-]{36}$/)
    }
  })

  it('honours traceparent: the trace id is on the request log lines', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
    // A routed request and an unmatched one (Fastify's 404 handler makes its logger apart).
    for (const path of ['/test/boom', '/nope']) {
      const r = await get(path, {
        headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      })
      const id = r.headers['x-correlation-id']
      const line = server.logs.find((l) => l.correlationId === id && l.msg === 'request completed')
      assert.equal(line?.traceId, traceId, path)
      assert.match(String(line?.spanId), /^[0-9a-f]{16}$/)
      assert.notEqual(line?.spanId, '00f067aa0ba902b7')
    }
  })

  const post = (body: string, type = 'application/json') =>
    get('/test/echo', { method: 'POST', headers: { 'content-type': type }, body })

  it('rejects bad JSON, wrong media types, oversized and invalid bodies with problem+json', async () => {
    const cases: [Promise<import('../support/https.ts').Response>, number][] = [
      [post('{"name":'), 400],
      [post('{"__proto__":{"admin":true},"name":"x"}'), 400],
      [post('name=x', 'application/x-www-form-urlencoded'), 415],
      [post(JSON.stringify({ name: 'x'.repeat(4000) })), 413],
      [post(JSON.stringify({ name: 'x', admin: true })), 400],
      [post(JSON.stringify({})), 400],
    ]
    for (const [pending, status] of cases) {
      const r = await pending
      assert.equal(r.status, status, r.body)
      assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
      assert.equal(r.headers['strict-transport-security'], HSTS)
      assert.equal(r.json().status, status)
    }
    const unknownField = (await post(JSON.stringify({ name: 'x', admin: true }))).json()
    assert.deepEqual(unknownField.errors, [
      { field: 'body.admin', message: 'is not an allowed property' },
    ])
    const missing = (await post('{}')).json()
    assert.equal(missing.errors[0].field, 'body.name')
    const ok = await post(JSON.stringify({ name: 'ok' }))
    assert.equal(ok.status, 200)
  })

  it('hides internal errors: opaque 500 without message, stack or secrets', async () => {
    const r = await get('/test/boom')
    assert.equal(r.status, 500)
    assert.match(String(r.headers['content-type']), /^application\/problem\+json/)
    assert.equal(r.headers['strict-transport-security'], HSTS)
    assert.ok(!r.body.includes(SECRET))
    assert.ok(!/at .*\.ts:\d+/.test(r.body), 'no stack trace')
    assert.equal(r.json().correlation_id, r.headers['x-correlation-id'])
  })

  it('exposes Prometheus metrics with request counts and latency by route and status', async () => {
    await get('/healthz')
    const m = await get('/metrics')
    assert.equal(m.status, 200)
    assert.match(
      m.body,
      /dflare_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/,
    )
    assert.match(
      m.body,
      /dflare_http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/healthz",status="200"\}/,
    )
  })

  it('redirects plain HTTP to the HTTPS public URL, never to the Host header', async () => {
    const port = Number(server.plane.redirectUrl?.port)
    assert.ok(port > 0)
    const res = await new Promise<{ status?: number; location?: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          path: '//evil.example/x?y=1',
          headers: { host: 'evil.example' },
        },
        (r) => {
          r.resume()
          resolve({ status: r.statusCode, location: r.headers.location })
        },
      )
      req.on('error', reject)
      req.end()
    })
    assert.equal(res.status, 308)
    assert.equal(res.location, `${server.plane.runtime.publicUrl.origin}/evil.example/x?y=1`)
  })
})
