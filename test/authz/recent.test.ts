import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RecentRequests, type RecordedRequest } from '../../src/authz/pdp.ts'

const recorded = (tenant: string, n: number): RecordedRequest => ({
  tenant,
  at: new Date(n * 1000),
  request: {
    principal: { type: 'Dflare::User', id: `${tenant}/u${n}` },
    action: { type: 'Dflare::Action', id: 'cluster.read' },
    resource: { type: 'Dflare::Cluster', id: `${tenant}/c` },
    context: { ip: { __extn: { fn: 'ip', arg: '10.0.0.1' } }, amr: ['pwd'] },
  },
})

test('recent requests: the last N per tenant, oldest first, tenants apart', () => {
  const recent = new RecentRequests(3)
  for (let i = 1; i <= 7; i++) recent.add(recorded('acme', i))
  recent.add(recorded('globex', 1))
  assert.deepEqual(
    recent.of('acme').map((r) => r.at.getTime() / 1000),
    [5, 6, 7],
  )
  assert.deepEqual(
    recent.of('globex').map((r) => r.request.principal.id),
    ['globex/u1'],
  )
  assert.deepEqual(recent.of('initech'), [])
  // A snapshot: what the caller changes afterwards is not what was recorded.
  const r = recorded('initech', 1)
  recent.add(r)
  r.request.context.amr = ['changed']
  assert.deepEqual(recent.of('initech'), [recorded('initech', 1)])
  // A request that cannot be written as JSON is skipped, not thrown (the decision stands).
  const odd = recorded('umbrella', 1)
  odd.request.context.n = 1n
  assert.doesNotThrow(() => recent.add(odd))
  assert.deepEqual(recent.of('umbrella'), [])
  const none = new RecentRequests(0)
  none.add(recorded('acme', 1))
  assert.deepEqual(none.of('acme'), [])
})
