import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import YAML from 'yaml'
import { isolationRoutes } from '../../src/isolation/routes.ts'
import type { Caller } from '../../src/isolation/service.ts'
import { type Harness, harness, operator, specFor } from './helpers.ts'

describe('isolation HTTP routes', () => {
  let h: Harness
  let app: FastifyInstance
  const tenantUser: Caller = {
    ...operator,
    realm: 'acme',
    actor: { kind: 'user', id: 'u1', realm: 'acme' },
  }
  before(async () => {
    h = await harness()
    h.realms.add('acme')
    app = Fastify()
    // Stand-in for the gateway: the header picks the authenticated caller.
    await isolationRoutes(app, {
      service: h.service,
      callerOf: (req) => (req.headers['x-test-caller'] === 'tenant' ? tenantUser : operator),
    })
  })
  after(async () => {
    await app.close()
    await h.close()
  })

  test('PUT spec (YAML), plan, apply, GET spec, verify, destroy', async () => {
    const put = await app.inject({
      method: 'PUT',
      url: '/api/v1/isolation/tenants/acme/spec',
      headers: { 'content-type': 'application/yaml' },
      payload: YAML.stringify(specFor('acme', 1)),
    })
    assert.equal(put.statusCode, 201, put.body)
    assert.equal(put.json().version, 1)
    const again = await app.inject({
      method: 'PUT',
      url: '/api/v1/isolation/tenants/acme/spec',
      payload: specFor('acme', 1),
    })
    assert.equal(again.statusCode, 200, 'same spec, same version')

    const plan = await app.inject({ method: 'POST', url: '/api/v1/isolation/tenants/acme/plan' })
    assert.equal(plan.statusCode, 200)
    const hash = plan.json().hash
    const apply = await app.inject({
      method: 'POST',
      url: '/api/v1/isolation/tenants/acme/apply',
      payload: { planHash: hash },
    })
    assert.equal(apply.statusCode, 200, apply.body)
    assert.equal(apply.json().plan.hash, hash)

    const got = await app.inject({ url: '/api/v1/isolation/tenants/acme/spec?version=1' })
    assert.equal(got.json().spec.tenant, 'acme')
    const verify = await app.inject({ url: '/api/v1/isolation/verify' })
    assert.equal(verify.json().ok, true)
    const destroy = await app.inject({
      method: 'POST',
      url: '/api/v1/isolation/tenants/acme/destroy',
    })
    assert.equal(destroy.statusCode, 200)
  })

  test('errors are problem+json; tenant users are forbidden', async () => {
    const bad = await app.inject({
      method: 'PUT',
      url: '/api/v1/isolation/tenants/acme/spec',
      payload: { apiVersion: 'dflare.dev/v1', kind: 'TenantIsolation', networks: 'x' },
    })
    assert.equal(bad.statusCode, 400)
    assert.equal(bad.headers['content-type'], 'application/problem+json; charset=utf-8')
    assert.ok(bad.json().errors.some((e: { field: string }) => e.field === 'networks'))
    const forbidden = await app.inject({
      url: '/api/v1/isolation/verify',
      headers: { 'x-test-caller': 'tenant' },
    })
    assert.equal(forbidden.statusCode, 403)
    const hashBad = await app.inject({
      method: 'POST',
      url: '/api/v1/isolation/tenants/acme/apply',
      payload: { planHash: 'nope' },
    })
    assert.equal(hashBad.statusCode, 400)
    const missing = await app.inject({ url: '/api/v1/isolation/tenants/nobody/spec' })
    assert.equal(missing.statusCode, 404)
  })
})
