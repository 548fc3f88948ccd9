import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { AuthzService } from '../../src/authz/service.ts'
import type { Problem } from '../../src/core/errors.ts'
import { createDrivers } from '../../src/isolation/drivers/index.ts'
import { IsolationService } from '../../src/isolation/service.ts'
import { MFA, uid, world } from '../authz/fixture.ts'
import { type Harness, harness, operator, specFor } from './helpers.ts'

/** The isolation service against the real Cedar PDP and its built-in roles. */
describe('isolation authorized by the Cedar PDP', () => {
  let h: Harness
  let w: Awaited<ReturnType<typeof world>>
  let service: IsolationService
  before(async () => {
    h = await harness()
    w = await world()
    service = new IsolationService({
      db: h.t.db,
      clock: h.clock,
      events: h.events,
      pdp: (w.service as AuthzService).pdp,
      realmExists: async () => true,
      drivers: createDrivers(h.config),
      config: h.config,
    })
  })
  after(async () => {
    await w.close()
    await h.close()
  })
  const caller = (id: string, realm: string, context: Record<string, unknown> = {}) => ({
    ...operator,
    principal: uid('User', id),
    realm,
    actor: { kind: 'user' as const, id, realm },
    context,
  })

  test('a platform admin applies and destroys with MFA, and not without', async () => {
    const admin = caller('op-admin', 'platform', MFA)
    await service.apply(admin, 't1', { spec: specFor('t1', 1) })
    await assert.rejects(
      service.destroy(caller('op-admin', 'platform', { amr: ['pwd'] }), 't1'),
      (e: Problem) => e.status === 403,
    )
    const plan = await service.plan(caller('op-admin', 'platform'), 't1')
    assert.equal(plan.changes.length, 0, 'planning is not sensitive')
    await service.destroy(admin, 't1')
  })

  test('a security officer verifies and reads but cannot apply', async () => {
    const sec = caller('op-sec', 'platform', MFA)
    assert.equal((await service.verify(sec)).ok, true)
    await assert.rejects(
      service.apply(sec, 't1', { spec: specFor('t1', 1) }),
      (e: Problem) => e.status === 403,
    )
  })

  test("a tenant's own admin may not change its isolation (platform roles only)", async () => {
    await assert.rejects(
      service.apply(caller('tenant-admin', 't1', MFA), 't1', { spec: specFor('t1', 1) }),
      (e: Problem) => e.status === 403,
    )
  })
})
