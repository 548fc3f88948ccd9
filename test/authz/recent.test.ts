import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Decision } from '../../src/authz/contract.ts'
import { RecentRequests, type RecordedRequest } from '../../src/authz/pdp.ts'

const recorded = (tenant: string, n: number): RecordedRequest => ({
  tenant,
  at: new Date(n * 1000),
  request: {
    principal: { type: 'Dflare::User', id: `${tenant}/u${n}` },
    action: { type: 'Dflare::Action', id: 'cluster.read' },
    resource: { type: 'Dflare::Cluster', id: `${tenant}/c` },
    context: {},
  },
  decision: { decision: 'deny', determining: [], errors: [], reason: '' } satisfies Decision,
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
  const none = new RecentRequests(0)
  none.add(recorded('acme', 1))
  assert.deepEqual(none.of('acme'), [])
})
