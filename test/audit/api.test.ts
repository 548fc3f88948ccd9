import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { openCheckpoint, parseVerifierKey } from '../../src/audit/note.ts'
import { auditRoutes } from '../../src/audit/routes.ts'
import { Problem } from '../../src/core/errors.ts'
import { type AuditFixture, auditFixture, event } from './helpers.ts'
import { leaf, verifyConsistency, verifyInclusion } from './rfc6962.ts'

const b64 = (s: string) => Buffer.from(s, 'base64')

describe('audit API', () => {
  let f: AuditFixture
  let app: FastifyInstance
  before(async () => {
    f = await auditFixture()
    app = Fastify()
    // Stand-in for the gateway: an authorized caller's scope, from test headers.
    app.addHook('onRequest', async (request) => {
      const role = request.headers['x-test-role']
      const tenant = String(request.headers['x-test-tenant'] ?? '')
      if (role === 'security-officer')
        request.auditAccess = {
          allowed: 'all',
          tenant: 'platform',
          actor: { kind: 'user', id: 'so-1' },
        }
      else if (role === 'auditor')
        request.auditAccess = {
          allowed: [tenant],
          tenant,
          actor: { kind: 'user', id: `aud-${tenant}` },
        }
    })
    app.setErrorHandler((err, _request, reply) => {
      if (err instanceof Problem) return reply.code(err.status).send(err.toJSON())
      const status = (err as { statusCode?: number }).statusCode ?? 500
      return reply.code(status).send({ status, title: status === 400 ? 'Bad Request' : 'error' })
    })
    await auditRoutes(app, f.audit)
    await app.ready()
    const start = f.clock.now().getTime()
    await Promise.all(
      Array.from({ length: 700 }, (_, i) =>
        f.audit.sink.record(
          event(i, { tenant: i % 2 ? 'acme' : 'globex', time: new Date(start + (i + 1) * 1000) }),
        ),
      ),
    )
    f.clock.advance(701_000)
  })
  after(async () => {
    await app.close()
    await f.close()
  })

  const get = (url: string, headers: Record<string, string>) =>
    app.inject({ method: 'GET', url, headers })
  const auditor = (tenant: string) => ({ 'x-test-role': 'auditor', 'x-test-tenant': tenant })
  const officer = { 'x-test-role': 'security-officer', 'x-correlation-id': 'read-1' }

  it('refuses callers the gateway did not authorize', async () => {
    const r = await get('/api/v1/audit/events', {})
    assert.equal(r.statusCode, 403)
  })

  it("a tenant's auditor reads only its own log", async () => {
    const r = await get('/api/v1/audit/events?limit=1000', auditor('acme'))
    assert.equal(r.statusCode, 200)
    const page = r.json()
    assert.ok(page.events.length >= 350)
    assert.ok(page.events.every((e: { log: string }) => e.log === 'acme'))
    for (const url of [
      '/api/v1/audit/events?log=globex',
      '/api/v1/audit/logs/globex/checkpoint',
      '/api/v1/audit/logs/globex/events/0',
      '/api/v1/audit/logs/globex/proofs/inclusion?index=0&size=1',
      '/api/v1/audit/logs/globex/proofs/consistency?first=1&second=2',
      '/api/v1/audit/events?format=ndjson&log=globex',
    ])
      assert.equal((await get(url, auditor('acme'))).statusCode, 403, url)
  })

  it('filters and paginates with a cursor', async () => {
    const seen: number[] = []
    let cursor: string | undefined
    do {
      const r = await get(
        `/api/v1/audit/events?log=globex&outcome=denied&limit=20${cursor ? `&cursor=${cursor}` : ''}`,
        officer,
      )
      assert.equal(r.statusCode, 200)
      const page = r.json()
      for (const e of page.events) {
        assert.equal(e.event.outcome, 'denied')
        seen.push(e.index)
      }
      cursor = page.nextCursor
    } while (cursor)
    assert.equal(seen.length, 70) // even i with i % 5 === 0, among 0..698
    assert.deepEqual(
      seen,
      [...seen].sort((a, b) => a - b),
    )
    const one = (await get('/api/v1/audit/events?correlationId=cid-7', officer)).json()
    assert.equal(one.events.length, 1)
    assert.equal(one.events[0].event.actor.id, 'user-0')
    const since = new Date(Date.UTC(2026, 0, 1) + 100_500).toISOString()
    const until = new Date(Date.UTC(2026, 0, 1) + 110_500).toISOString()
    const range = (await get(`/api/v1/audit/events?since=${since}&until=${until}`, officer)).json()
    assert.equal(range.events.length, 10)
    assert.equal((await get('/api/v1/audit/events?cursor=%25%25', officer)).statusCode, 400)
    assert.equal((await get('/api/v1/audit/events?outcome=maybe', officer)).statusCode, 400)
    assert.equal((await get('/api/v1/audit/events?since=yesterday', officer)).statusCode, 400)
  })

  it('exports NDJSON and CSV', async () => {
    const nd = await get(
      '/api/v1/audit/events?log=acme&action=api:CreateProject&format=ndjson',
      officer,
    )
    assert.equal(nd.statusCode, 200)
    assert.match(String(nd.headers['content-type']), /application\/x-ndjson/)
    const lines = nd.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    assert.equal(lines.length, 350)
    const csv = await get('/api/v1/audit/events?log=globex&format=csv&type=api.request', officer)
    assert.equal(csv.statusCode, 200)
    const rows = csv.body.trim().split('\r\n')
    assert.match(rows[0]!, /^log,index,time,type,tenant,actor_kind,actor_id/)
    assert.equal(rows.length, 351)
  })

  it('serves signed checkpoints and proofs that verify independently', async () => {
    const keys = (await get('/api/v1/audit/keys', officer)).json().keys.map(parseVerifierKey)
    const first = await app.inject({
      method: 'POST',
      url: '/api/v1/audit/logs/acme/checkpoint',
      headers: auditor('acme'),
    })
    assert.equal(first.statusCode, 201)
    const cp1 = openCheckpoint(first.json().note, keys)
    assert.equal(cp1.origin, 'audit.test/log/acme')
    for (let i = 0; i < 300; i++) await f.audit.sink.record(event(i, { tenant: 'acme' }))
    const cp2 = openCheckpoint(
      (
        await app.inject({
          method: 'POST',
          url: '/api/v1/audit/logs/acme/checkpoint',
          headers: auditor('acme'),
        })
      ).json().note,
      keys,
    )
    assert.ok(cp2.size > cp1.size)

    for (const index of [0, 1, 255, 256, 300, cp1.size - 1]) {
      const e = (await get(`/api/v1/audit/logs/acme/events/${index}`, auditor('acme'))).json()
      const proof = (
        await get(
          `/api/v1/audit/logs/acme/proofs/inclusion?index=${index}&size=${cp2.size}`,
          auditor('acme'),
        )
      ).json()
      assert.ok(leaf(Buffer.from(e.body)).equals(b64(proof.leafHash)))
      assert.ok(
        verifyInclusion(
          index,
          cp2.size,
          leaf(Buffer.from(e.body)),
          proof.auditPath.map(b64),
          cp2.root,
        ),
        `inclusion of ${index}`,
      )
    }
    const c = (
      await get(
        `/api/v1/audit/logs/acme/proofs/consistency?first=${cp1.size}&second=${cp2.size}`,
        auditor('acme'),
      )
    ).json()
    assert.ok(verifyConsistency(cp1.size, cp2.size, cp1.root, cp2.root, c.proof.map(b64)))
    assert.equal(
      (
        await get(
          `/api/v1/audit/logs/acme/proofs/inclusion?index=5&size=${cp2.size + 100_000}`,
          auditor('acme'),
        )
      ).statusCode,
      400,
    )
  })

  it('records reads of the audit log in the reader’s log', async () => {
    const r = (
      await get('/api/v1/audit/events?log=platform&type=audit.read&correlationId=read-1', officer)
    ).json()
    assert.ok(r.events.length > 0)
    assert.equal(r.events[0].event.actor.id, 'so-1')
    assert.equal(r.events[0].event.action, 'audit:QueryEvents')
    const acme = (await get('/api/v1/audit/events?type=audit.read', auditor('acme'))).json()
    assert.ok(
      acme.events.some(
        (e: { event: { action: string } }) => e.event.action === 'audit:GetInclusionProof',
      ),
    )
  })
})
