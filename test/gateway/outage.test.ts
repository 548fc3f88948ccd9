import assert from 'node:assert/strict'
import { it } from 'node:test'
import { gatewayWorld } from './world.ts'

it('fails closed when the database is down: no data, no 2xx, problem+json', async () => {
  const w = await gatewayWorld()
  try {
    const alice = await w.as('acme', 'alice')
    const ok = await w.call('POST', '/api/v1/tenants/acme/clusters', {
      token: alice,
      body: { name: 'before-outage' },
    })
    assert.equal(ok.status, 201)
    // The database goes away under the running gateway.
    await w.db.close()
    for (const [method, path, body] of [
      ['GET', '/api/v1/tenants/acme/clusters', undefined],
      ['GET', `/api/v1/tenants/acme/clusters/${ok.json().id}`, undefined],
      ['POST', '/api/v1/tenants/acme/clusters', { name: 'during-outage' }],
    ] as const) {
      const r = await w.call(method, path, { token: alice, body })
      assert.ok(r.status >= 500, `${method} ${path} → ${r.status}`)
      assert.match(String(r.headers['content-type']), /problem\+json/)
      assert.ok(!r.body.includes('before-outage'))
    }
  } finally {
    await w.close().catch(() => {})
  }
})
