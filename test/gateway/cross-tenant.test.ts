import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { PLATFORM_ROLES, ROLES } from '../../src/authz/schema.ts'

// Platform roles cannot be bound inside a tenant (the authz writer refuses it).
const TENANT_ROLES = ROLES.filter((r) => !PLATFORM_ROLES.includes(r))

import { type GatewayWorld, gatewayWorld } from './world.ts'

/**
 * The cross-tenant matrix, generated from the OpenAPI document so that new routes are covered
 * automatically: for every operation, every built-in tenant role held in tenant `acme`, aimed at
 * tenant `globex` and its real resources, the answer is 401/403/404 and the body carries none
 * of globex's data.
 */
describe('cross-tenant matrix from /api/openapi.json', () => {
  let w: GatewayWorld
  const secrets: string[] = []
  const ids = new Map<string, string>() // collection segment → a real globex id
  let operations: { method: string; path: string }[] = []

  before(async () => {
    w = await gatewayWorld()
    const doc = (await w.call('GET', '/api/openapi.json')).json()
    assert.equal(doc.openapi, '3.1.0')
    operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, ops]) => Object.keys(ops).map((method) => ({ method: method.toUpperCase(), path })),
    )
    // Real globex data, created by globex's own admin through the API.
    const bob = await w.as('globex', 'bob')
    for (const op of operations.filter(
      (o) => o.method === 'POST' && /^\/api\/v1\/tenants\/\{tenant\}\/[a-z]+$/.test(o.path),
    )) {
      const collection = op.path.split('/').pop()!
      const name = `globex-secret-${collection}`
      const r = await w.call('POST', op.path.replace('{tenant}', 'globex'), {
        token: bob,
        body: { name },
      })
      assert.equal(r.status, 201, `${op.path}: ${r.body}`)
      ids.set(collection, r.json().id)
      secrets.push(name, r.json().id)
    }
    for (const [i, role] of TENANT_ROLES.entries())
      await w.bind('acme', `role-${i}`, role, ['Tenant', 'acme'])
  })
  after(() => w.close())

  it('the document lists every API route, each with a tenant parameter or platform scope', () => {
    assert.ok(operations.length >= 20, `only ${operations.length} operations`)
  })

  it('every route × every built-in role × a foreign tenant resource answers 401/403/404 with no foreign data', async () => {
    let checked = 0
    for (const [i, role] of TENANT_ROLES.entries()) {
      const token = await w.as('acme', `role-${i}`)
      for (const op of operations) {
        const segments = op.path.split('/')
        const path = segments
          .map((seg, k) => {
            if (seg === '{tenant}') return 'globex'
            if (seg.startsWith('{')) return ids.get(segments[k - 1]!) ?? 'does-not-exist'
            return seg
          })
          .join('/')
        const body = ['POST', 'PUT', 'PATCH'].includes(op.method)
          ? { name: 'intruder', version: 1, labels: {} }
          : undefined
        const r = await w.call(op.method, path, { token, body })
        assert.ok(
          [401, 403, 404].includes(r.status),
          `${role}: ${op.method} ${path} → ${r.status} ${r.body}`,
        )
        for (const s of secrets)
          assert.ok(!r.body.includes(s), `${role}: ${op.method} ${path} leaked ${s}`)
        checked++
      }
    }
    assert.equal(checked, TENANT_ROLES.length * operations.length)
    // Nothing changed in globex: its objects are all still there, unmodified.
    const bob = await w.as('globex', 'bob')
    for (const [collection, id] of ids) {
      const r = await w.call('GET', `/api/v1/tenants/globex/${collection}/${id}`, { token: bob })
      assert.equal(r.status, 200)
      assert.equal(r.json().version, 1)
    }
  })

  it('a token of the foreign tenant itself cannot be replayed against this tenant either', async () => {
    const bob = await w.as('globex', 'bob')
    for (const op of operations.filter((o) => o.path.includes('{tenant}'))) {
      const path = op.path.replace('{tenant}', 'acme').replace(/\{[a-z]+\}/g, 'x')
      const r = await w.call(op.method, path, {
        token: bob,
        body: op.method === 'GET' || op.method === 'DELETE' ? undefined : {},
      })
      assert.equal(r.status, 401, `${op.method} ${path}`)
    }
  })
})
