import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { authzApiRoutes } from '../../src/authz/api.ts'
import { Problem } from '../../src/core/errors.ts'
import type { AnyApiRoute } from '../../src/gateway/route.ts'
import { MFA, world } from './fixture.ts'

type W = Awaited<ReturnType<typeof world>>
let w: W
let routes: AnyApiRoute[]
before(async () => {
  w = await world()
  routes = authzApiRoutes(w.service)
})
after(async () => {
  await w.close()
})

const route = (method: string, url: string) =>
  routes.find((r) => r.method === method && r.url === url)!

async function call(r: AnyApiRoute, params: Record<string, unknown>, body?: unknown) {
  const tenant = params.tenant as string
  const resource = await r.resource({ params, query: {}, body, tenant, principal: {} as never })
  const run = (tx: unknown) =>
    r.handler({
      request: {} as never,
      params,
      query: {},
      body,
      principal: {} as never,
      tenant,
      resource: resource!,
      call: { actor: { kind: 'user', id: 'tester' }, correlationId: 'c', sourceIp: '127.0.0.1' },
      tx: tx as never,
    })
  return r.write === false || r.method === 'GET'
    ? run(undefined)
    : w.db.transaction((tx) => run(tx))
}

test('every route declares a known policy action and tenant-confined resource', async () => {
  for (const r of routes) {
    assert.match(r.action, /^(policy\.|authz\.decide$)/)
    if (r.action === 'authz.decide') continue
    const res = await r.resource({
      params: { tenant: 't1', version: 1 },
      query: {},
      body: {},
      tenant: 't1',
      principal: {} as never,
    })
    assert.equal(res!.tenant, 't1')
  }
})

test('publish, read, list, dry-run and activate through the API handlers', async () => {
  const published = await call(
    route('POST', '/tenants/:tenant/policies'),
    { tenant: 't1' },
    {
      text: '@id("v1") permit (principal, action == Dflare::Action::"cluster.read", resource);',
    },
  )
  assert.equal(published.status, 201)
  const v1 = (published.body as { version: number }).version
  const read = await call(route('GET', '/tenants/:tenant/policies/:version'), {
    tenant: 't1',
    version: v1,
  })
  assert.match((read.body as { text: string }).text, /v1/)
  await w.decide(['User', 'nobody'], 'cluster.read', ['Cluster', 'c1'])
  const dry = await call(
    route('POST', '/tenants/:tenant/policies/dry-run'),
    { tenant: 't1' },
    {
      text: '@id("v2") forbid (principal, action, resource) when { principal has clearances };',
    },
  )
  assert.ok((dry.body as { replayed: number }).replayed >= 1)
  const v2 = (
    await call(
      route('POST', '/tenants/:tenant/policies'),
      { tenant: 't1' },
      { text: '@id("v2") forbid (principal, action, resource) when { false };' },
    )
  ).body as { version: number }
  await call(route('POST', '/tenants/:tenant/policies/:version/activate'), {
    tenant: 't1',
    version: v1,
  })
  const list = await call(route('GET', '/tenants/:tenant/policies'), { tenant: 't1' })
  const versions = (list.body as { versions: { version: number; active: boolean }[] }).versions
  assert.deepEqual(versions.find((v) => v.active)?.version, v1)
  assert.ok(versions.some((v) => v.version === v2.version))
})

test('invalid policies answer 422 with line and column', async () => {
  await assert.rejects(
    call(
      route('POST', '/tenants/:tenant/policies'),
      { tenant: 't1' },
      { text: '@id("x")\npermit (principal, action, resource)\nwhen { principal.nope };' },
    ),
    (err: unknown) => {
      assert.ok(err instanceof Problem)
      assert.equal(err.status, 422)
      const [p] = err.extensions.errors as { line: number; column: number }[]
      assert.equal(p!.line, 3)
      return true
    },
  )
})

test('the policy admin actions need the tenant-admin role (and MFA to publish)', async () => {
  const res = { type: 'Dflare::Policy', id: 't1/policies' }
  const ask = (user: string, action: string, ctx = {}) =>
    w.service.pdp.decide({
      principal: { type: 'Dflare::User', id: user },
      action: { type: 'Dflare::Action', id: action },
      resource: res,
      context: ctx,
      entities: [
        { uid: res, tenant: 't1', attrs: {}, parents: [{ type: 'Dflare::Tenant', id: 't1' }] },
      ],
    })
  assert.equal((await ask('tenant-admin', 'policy.update', MFA)).decision, 'allow')
  assert.equal((await ask('tenant-admin', 'policy.update')).decision, 'deny')
  assert.equal((await ask('project-admin', 'policy.update', MFA)).decision, 'deny')
  assert.equal((await ask('t2-admin', 'policy.update', MFA)).decision, 'deny')
})

test('the decisions gateway route answers batches', async () => {
  const r = route('POST', '/authz/decisions')
  const mk = (u: string) => ({
    principal: { type: 'Dflare::User', id: u },
    action: { type: 'Dflare::Action', id: 'cluster.read' },
    resource: { type: 'Dflare::Cluster', id: 'c1' },
    context: {},
  })
  const out = await call(r, { tenant: 'platform' }, { requests: [mk('viewer'), mk('t2-admin')] })
  const ds = (out.body as { decisions: { decision: string }[] }).decisions
  assert.deepEqual(
    ds.map((d) => d.decision),
    ['allow', 'deny'],
  )
})
