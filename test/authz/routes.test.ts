import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import Fastify from 'fastify'
import { authzRoutes, DECISIONS_PATH } from '../../src/authz/routes.ts'
import { world } from './fixture.ts'

type W = Awaited<ReturnType<typeof world>>
let w: W
const app = Fastify()
before(async () => {
  w = await world()
  await authzRoutes(app, { pdp: w.service.pdp })
  await app.ready()
})
after(async () => {
  await app.close()
  await w.close()
})

const req = (user: string, act: string, type: string, id: string) => ({
  principal: { type: 'Dflare::User', id: user },
  action: { type: 'Dflare::Action', id: act },
  resource: { type: `Dflare::${type}`, id },
  context: {},
})

test('single and batch decisions', async () => {
  const one = await app.inject({
    method: 'POST',
    url: DECISIONS_PATH,
    payload: req('viewer', 'cluster.read', 'Cluster', 'c1'),
  })
  assert.equal(one.statusCode, 200)
  assert.equal(one.json().decision, 'allow')
  const batch = await app.inject({
    method: 'POST',
    url: DECISIONS_PATH,
    payload: {
      requests: [
        req('viewer', 'cluster.read', 'Cluster', 'c1'),
        req('viewer', 'cluster.read', 'Cluster', 'x1'),
      ],
    },
  })
  assert.equal(batch.statusCode, 200)
  assert.deepEqual(
    batch.json().decisions.map((d: { decision: string }) => d.decision),
    ['allow', 'deny'],
  )
  assert.deepEqual(batch.json().decisions[1].determining, ['platform.tenant-isolation'])
})

test('malformed bodies are rejected by the schema', async () => {
  const bad = await app.inject({ method: 'POST', url: DECISIONS_PATH, payload: { principal: 'x' } })
  assert.equal(bad.statusCode, 400)
  const tooMany = await app.inject({
    method: 'POST',
    url: DECISIONS_PATH,
    payload: {
      requests: Array.from({ length: 101 }, () => req('viewer', 'cluster.read', 'Cluster', 'c1')),
    },
  })
  assert.equal(tooMany.statusCode, 400)
})
