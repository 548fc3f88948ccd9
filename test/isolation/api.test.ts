import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Problem } from '../../src/core/errors.ts'
import type { Principal } from '../../src/gateway/principal.ts'
import type { AnyApiRoute } from '../../src/gateway/route.ts'
import { isolationApiRoutes } from '../../src/isolation/api.ts'
import { type Harness, harness, specFor } from './helpers.ts'

describe('isolation routes declared for the gateway', () => {
  let h: Harness
  let routes: AnyApiRoute[]
  before(async () => {
    h = await harness()
    routes = isolationApiRoutes(h.service)
  })
  after(() => h.close())

  const principal = (realm: string): Principal => ({
    kind: 'user',
    uid: { type: 'Dflare::User', id: `${realm}/alice` },
    realm,
    subject: 'alice',
    scope: { kind: 'org' },
    amr: ['pwd', 'mfa'],
    authTime: 1_700_000_000,
    via: 'bearer',
  })
  const call = (
    method: string,
    url: string,
    params: Record<string, string>,
    body?: unknown,
    realm = 'platform',
  ) => {
    const route = routes.find((r) => r.method === method && r.url === url)!
    const resource = route.resource({
      params,
      query: {},
      body,
      tenant: params.tenant ?? 'platform',
      principal: principal(realm),
    }) as never
    return route.handler({
      request: undefined as never,
      params,
      query: {},
      body,
      principal: principal(realm),
      tenant: params.tenant ?? 'platform',
      resource,
      call: {
        actor: { kind: 'user', id: 'alice', realm },
        correlationId: 'c-1',
        sourceIp: '127.0.0.1',
      },
      tx: undefined,
    })
  }

  test('every route names a tenantspec action and the TenantSpec resource', () => {
    assert.deepEqual(
      routes.map((r) => `${r.method} ${r.url} ${r.action}`),
      [
        'PUT /tenants/:tenant/isolation/spec tenantspec.apply',
        'GET /tenants/:tenant/isolation/spec tenantspec.read',
        'POST /tenants/:tenant/isolation/plan tenantspec.plan',
        'POST /tenants/:tenant/isolation/apply tenantspec.apply',
        'POST /tenants/:tenant/isolation/destroy tenantspec.destroy',
        'GET /isolation/verify tenantspec.read',
      ],
    )
  })

  test('handlers pass the principal and the Cedar context (MFA, ip) through to the PDP', async () => {
    const r = await call(
      'POST',
      '/tenants/:tenant/isolation/apply',
      { tenant: 'acme' },
      { spec: specFor('acme', 1) },
    )
    assert.ok((r.body as { executed: number }).executed > 0)
    const req = h.pdp.requests.at(-1)!
    assert.deepEqual(req.principal, { type: 'Dflare::User', id: 'platform/alice' })
    assert.deepEqual(req.context.amr, ['pwd', 'mfa'])
    assert.deepEqual(req.context.ip, { __extn: { fn: 'ip', arg: '127.0.0.1' } })
    const ev = h.events.events.find((e) => e.type === 'isolation.apply')!
    assert.equal(ev.correlationId, 'c-1')
    await assert.rejects(
      call('POST', '/tenants/:tenant/isolation/destroy', { tenant: 'acme' }, undefined, 'acme'),
      (e: Problem) => e.status === 403,
    )
  })
})
