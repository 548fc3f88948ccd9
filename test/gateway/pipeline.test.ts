import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import Fastify from 'fastify'
import { SignJWT } from 'jose'
import { guardApiRoutes, HOLD_READS_UP_TO } from '../../src/gateway/pipeline.ts'
import { type GatewayWorld, gatewayWorld } from './world.ts'

describe('gateway: authenticate → authorize → handle → audit', () => {
  let w: GatewayWorld
  before(async () => {
    w = await gatewayWorld()
  })
  after(() => w.close())

  const create = async (
    token: string,
    tenant = 'acme',
    body: Record<string, unknown> = { name: `c-${Math.random().toString(36).slice(2, 8)}` },
    headers: Record<string, string> = {},
  ) => w.call('POST', `/api/v1/tenants/${tenant}/clusters`, { token, body, headers })

  it('a tenant admin creates, reads, lists, updates and deletes a record', async () => {
    const alice = await w.as('acme', 'alice')
    const c = await create(alice, 'acme', {
      name: 'train-a',
      project: 'p1',
      labels: { team: 'ml' },
    })
    assert.equal(c.status, 201, c.body)
    const rec = c.json()
    assert.equal(rec.owner, 'alice')
    assert.equal(
      (await w.call('GET', `/api/v1/tenants/acme/clusters/${rec.id}`, { token: alice })).json()
        .name,
      'train-a',
    )
    const list = await w.call('GET', '/api/v1/tenants/acme/clusters?label=team=ml', {
      token: alice,
    })
    assert.deepEqual(
      list.json().items.map((i: { id: string }) => i.id),
      [rec.id],
    )
    const upd = await w.call('PATCH', `/api/v1/tenants/acme/clusters/${rec.id}`, {
      token: alice,
      body: { labels: { team: 'infra' }, version: 1 },
    })
    assert.equal(upd.status, 200, upd.body)
    const stale = await w.call('PATCH', `/api/v1/tenants/acme/clusters/${rec.id}`, {
      token: alice,
      body: { labels: {}, version: 1 },
    })
    assert.equal(stale.status, 409)
    assert.equal(
      (await w.call('DELETE', `/api/v1/tenants/acme/clusters/${rec.id}`, { token: alice })).status,
      204,
    )
    assert.equal(
      (await w.call('GET', `/api/v1/tenants/acme/clusters/${rec.id}`, { token: alice })).status,
      404,
    )
  })

  it('401 with WWW-Authenticate for a missing, malformed, forged, expired or wrong-realm token', async () => {
    const missing = await w.call('GET', '/api/v1/tenants/acme/clusters')
    assert.equal(missing.status, 401)
    assert.match(String(missing.headers['www-authenticate']), /^Bearer realm="dflare"/)
    const alice = await w.as('acme', 'alice')
    const [h, p] = alice.split('.')
    const forgedPayload = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), sub: 'root' }),
    ).toString('base64url')
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${p}.`
    const hs256 = await new SignJWT(JSON.parse(Buffer.from(p!, 'base64url').toString()))
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: 'acme-k1' })
      .sign(new TextEncoder().encode(JSON.stringify(await w.authority.publicJwk('acme'))))
    const bad = [
      'garbage',
      `${h}.${forgedPayload}.${alice.split('.')[2]}`,
      none,
      hs256,
      await w.as('acme', 'alice', { iat: Math.floor(Date.now() / 1000) - 3600, ttl: 600 }),
      await w.as('acme', 'alice', { iat: Math.floor(Date.now() / 1000) + 600 }),
      await w.as('acme', 'alice', { ttl: 3600 }),
      await w.as('globex', 'bob', { claims: { tid: 'acme' } }),
    ]
    for (const token of bad) {
      const r = await w.call('GET', '/api/v1/tenants/acme/clusters', { token })
      assert.equal(r.status, 401, token.slice(0, 40))
      assert.match(String(r.headers['www-authenticate']), /error="invalid_token"/)
      assert.match(String(r.headers['content-type']), /problem\+json/)
    }
  })

  it("a token from another tenant's realm is refused on this tenant (401), and its own tenant's data stays unseen", async () => {
    const bob = await w.as('globex', 'bob')
    const r = await w.call('GET', '/api/v1/tenants/acme/clusters', { token: bob })
    assert.equal(r.status, 401)
    // Also once the token was accepted on its own tenant (and its issuer remembered).
    const alice = await w.as('acme', 'alice')
    assert.equal(
      (await w.call('GET', '/api/v1/tenants/acme/clusters', { token: alice })).status,
      200,
    )
    const elsewhere = await w.call('GET', '/api/v1/tenants/globex/clusters', { token: alice })
    assert.equal(elsewhere.status, 401)
  })

  it('a revoked token or session is refused', async () => {
    const token = await w.as('acme', 'alice', { sid: 'sess-revoke-me' })
    assert.equal((await w.call('GET', '/api/v1/tenants/acme/clusters', { token })).status, 200)
    w.authority.revokedSid.add('sess-revoke-me')
    assert.equal((await w.call('GET', '/api/v1/tenants/acme/clusters', { token })).status, 401)
  })

  it('403 with the decision reason for a deny; viewer can read but not write', async () => {
    const vic = await w.as('acme', 'vic')
    assert.equal((await w.call('GET', '/api/v1/tenants/acme/clusters', { token: vic })).status, 200)
    const r = await create(vic)
    assert.equal(r.status, 403)
    assert.ok(r.json().detail)
    const nobody = await w.as('acme', 'nobody')
    assert.equal(
      (await w.call('GET', '/api/v1/tenants/acme/clusters', { token: nobody })).status,
      403,
    )
  })

  it('a sensitive action without MFA in amr is denied', async () => {
    const alice = await w.as('acme', 'alice')
    const c = (await create(alice)).json()
    const pwdOnly = await w.as('acme', 'alice', { amr: ['pwd'] })
    const r = await w.call('DELETE', `/api/v1/tenants/acme/clusters/${c.id}`, { token: pwdOnly })
    assert.equal(r.status, 403)
  })

  it('a project-scoped token only reaches its project', async () => {
    const alice = await w.as('acme', 'alice')
    const inP2 = (await create(alice, 'acme', { name: 'in-p2', project: 'p2' })).json()
    const scoped = await w.as('acme', 'alice', { scope: { kind: 'project', id: 'p1' } })
    assert.equal(
      (await w.call('GET', `/api/v1/tenants/acme/clusters/${inP2.id}`, { token: scoped })).status,
      403,
    )
    assert.equal((await create(scoped, 'acme', { name: 'scoped-p1', project: 'p1' })).status, 201)
  })

  it("another tenant's resource is 404 for a tenant principal, never 403, and leaks nothing", async () => {
    const bob = await w.as('globex', 'bob')
    const secret = (await create(bob, 'globex', { name: 'globex-secret-cluster' })).json()
    const alice = await w.as('acme', 'alice')
    for (const [method, path] of [
      ['GET', `/api/v1/tenants/globex/clusters/${secret.id}`],
      ['GET', '/api/v1/tenants/globex/clusters'],
      ['DELETE', `/api/v1/tenants/globex/clusters/${secret.id}`],
      ['GET', `/api/v1/tenants/acme/clusters/${secret.id}`],
    ] as const) {
      const r = await w.call(method, path, { token: alice })
      assert.ok([401, 404].includes(r.status), `${method} ${path}: ${r.status}`)
      assert.ok(!r.body.includes('globex-secret-cluster'))
    }
  })

  it('a platform admin reaches any tenant; a security officer cannot write there', async () => {
    const root = await w.as('platform', 'root')
    assert.equal(
      (await w.call('GET', '/api/v1/tenants/acme/clusters', { token: root })).status,
      200,
    )
    assert.equal((await create(root, 'globex')).status, 201)
    const officer = await w.as('platform', 'officer')
    assert.equal((await create(officer, 'acme')).status, 403)
  })

  it('400 problem+json naming the invalid field, before anything changes', async () => {
    const alice = await w.as('acme', 'alice')
    const r = await create(alice, 'acme', { name: 'Bad Name!' })
    assert.equal(r.status, 400)
    assert.equal(r.json().errors[0].field, 'body.name')
    const extra = await create(alice, 'acme', { name: 'ok-name', owner: 'mallory' })
    assert.equal(extra.status, 400)
    assert.equal(extra.json().errors[0].field, 'body.owner')
  })

  it('every write has exactly one audit event carrying the response correlation id', async () => {
    const alice = await w.as('acme', 'alice')
    const r = await create(
      alice,
      'acme',
      { name: 'audited-1' },
      { 'x-correlation-id': 'corr-audited-write-1' },
    )
    assert.equal(r.status, 201)
    assert.equal(r.headers['x-correlation-id'], 'corr-audited-write-1')
    const mine = (await w.events.all()).filter((e) => e.correlationId === 'corr-audited-write-1')
    assert.equal(mine.length, 1)
    assert.equal(mine[0]!.outcome, 'success')
    assert.equal(mine[0]!.action, 'cluster.create')
    assert.equal(mine[0]!.tenant, 'acme')
    assert.deepEqual(mine[0]!.actor, { kind: 'user', id: 'alice', realm: 'acme' })
    assert.ok(Array.isArray((mine[0]!.details as { policies: string[] }).policies))
  })

  it('denials and authentication failures are audited too', async () => {
    const vic = await w.as('acme', 'vic')
    await create(vic, 'acme', undefined, { 'x-correlation-id': 'corr-denied-write-1' })
    await w.call('GET', '/api/v1/tenants/acme/clusters', {
      headers: { 'x-correlation-id': 'corr-anon-read-1' },
    })
    const all = await w.events.all()
    assert.equal(all.find((e) => e.correlationId === 'corr-denied-write-1')?.outcome, 'denied')
    const anon = all.find((e) => e.correlationId === 'corr-anon-read-1')
    assert.equal(anon?.outcome, 'failure')
    assert.equal(anon?.actor.kind, 'anonymous')
  })

  it('fails closed: a PDP failure denies', async () => {
    const alice = await w.as('acme', 'alice')
    w.pdp.failing = true
    try {
      const r = await w.call('GET', '/api/v1/tenants/acme/clusters', { token: alice })
      assert.ok(r.status >= 500 && r.status !== 200)
      assert.equal((await create(alice, 'acme', { name: 'while-pdp-down' })).status >= 500, true)
    } finally {
      w.pdp.failing = false
    }
    const list = await w.call('GET', '/api/v1/tenants/acme/clusters?name=while-pdp-down', {
      token: alice,
    })
    assert.deepEqual(list.json().items, [])
  })

  it('fails closed: an audit failure is a 503 and the write is rolled back', async () => {
    const alice = await w.as('acme', 'alice')
    w.events.failing = true
    try {
      const r = await create(alice, 'acme', { name: 'unaudited' })
      assert.equal(r.status, 503)
      assert.equal(
        (await w.call('GET', '/api/v1/tenants/acme/clusters', { token: alice })).status,
        503,
      )
    } finally {
      w.events.failing = false
    }
    const list = await w.call('GET', '/api/v1/tenants/acme/clusters?name=unaudited', {
      token: alice,
    })
    assert.deepEqual(list.json().items, [])
  })

  it('fails closed when the database refuses the audit event: reads and writes answer 503 and nothing changes', async () => {
    const alice = await w.as('acme', 'alice')
    await create(alice, 'acme', { name: 'kept-secret' })
    // The event store refuses these requests' events of success (as a full disk would; a
    // failure event alone would be taken, so the answer must not depend on one being written).
    await w.db.query(
      `ALTER TABLE test_events ADD CONSTRAINT refuse_probe
       CHECK (event->>'correlationId' NOT LIKE 'corr-refused-%' OR event->>'outcome' <> 'success')`,
    )
    try {
      // A read commits with its event: no event, no data.
      const read = await w.call('GET', '/api/v1/tenants/acme/clusters', {
        token: alice,
        headers: { 'x-correlation-id': 'corr-refused-read' },
      })
      assert.equal(read.status, 503)
      assert.match(String(read.headers['content-type']), /problem\+json/)
      assert.ok(!read.body.includes('kept-secret'))
      // A write fails at its commit, with the same answer, and is rolled back.
      const written = await create(
        alice,
        'acme',
        { name: 'refused-write' },
        { 'x-correlation-id': 'corr-refused-write' },
      )
      assert.equal(written.status, 503)
      // Other requests go on.
      const ok = await w.call('GET', '/api/v1/tenants/acme/clusters', { token: alice })
      assert.equal(ok.status, 200)
      assert.ok(ok.body.includes('kept-secret'))
    } finally {
      await w.db.query('ALTER TABLE test_events DROP CONSTRAINT refuse_probe')
    }
    const all = await w.events.all()
    assert.equal(all.filter((e) => e.correlationId?.startsWith('corr-refused-')).length, 0)
    const list = await w.call('GET', '/api/v1/tenants/acme/clusters?name=refused-write', {
      token: alice,
    })
    assert.deepEqual(list.json().items, [])
  })

  it('under load reads still get exactly one audit event each (held or group-committed)', async () => {
    const alice = await w.as('acme', 'alice')
    const n = HOLD_READS_UP_TO * 3
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        w.call('GET', '/api/v1/tenants/acme/clusters', {
          token: alice,
          headers: { 'x-correlation-id': `corr-load-${i}` },
        }),
      ),
    )
    assert.deepEqual(
      answers.map((r) => r.status),
      answers.map(() => 200),
    )
    const mine = (await w.events.all()).filter((e) => e.correlationId?.startsWith('corr-load-'))
    assert.equal(mine.length, n)
    assert.equal(new Set(mine.map((e) => e.correlationId)).size, n)
    assert.ok(mine.every((e) => e.outcome === 'success' && e.action === 'cluster.list'))
  })

  it('Idempotency-Key replays the first response and refuses a different body', async () => {
    const alice = await w.as('acme', 'alice')
    const key = { 'idempotency-key': 'create-once-1' }
    const a = await create(alice, 'acme', { name: 'idem-1' }, key)
    const b = await create(alice, 'acme', { name: 'idem-1' }, key)
    assert.equal(a.status, 201)
    assert.equal(b.status, 201)
    assert.equal(b.json().id, a.json().id)
    assert.equal(b.headers['idempotent-replayed'], 'true')
    const c = await create(alice, 'acme', { name: 'idem-2' }, key)
    assert.equal(c.status, 422)
  })
})

describe('gateway: startup guard and rate limits', () => {
  it('refuses to start with an /api/v1 route that has no declared action', async () => {
    const app = Fastify()
    guardApiRoutes(app)
    assert.throws(() => app.get('/api/v1/sneaky', async () => 'no checks'), /no declared action/)
    assert.throws(() => app.post('/api/v1', async () => 'no checks'), /no declared action/)
    app.get('/healthz-like', async () => 'outside the API is fine')
    await app.close()
  })

  it('429 with Retry-After past the per-principal limit', async () => {
    const w = await gatewayWorld({ limits: { perPrincipal: { max: 3, windowMs: 60_000 } } })
    try {
      const alice = await w.as('acme', 'alice')
      const statuses: number[] = []
      for (let i = 0; i < 5; i++)
        statuses.push(
          (await w.call('GET', '/api/v1/tenants/acme/clusters', { token: alice })).status,
        )
      assert.deepEqual(statuses, [200, 200, 200, 429, 429])
      const r = await w.call('GET', '/api/v1/tenants/acme/clusters', { token: alice })
      assert.ok(Number(r.headers['retry-after']) >= 1)
      // Another principal of the same tenant is not affected by alice's limit.
      assert.equal(
        (await w.call('GET', '/api/v1/tenants/acme/clusters', { token: await w.as('acme', 'vic') }))
          .status,
        200,
      )
    } finally {
      await w.close()
    }
  })
})
