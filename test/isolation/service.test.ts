import assert from 'node:assert/strict'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Problem } from '../../src/core/errors.ts'
import type { SecurityEvent } from '../../src/core/events.ts'
import { type Harness, harness, operator, specFor } from './helpers.ts'

describe('isolation service', () => {
  let h: Harness
  before(async () => {
    h = await harness()
  })
  after(() => h.close())

  test('plan shows every layer to create, changes nothing, and apply realizes it', async () => {
    const plan = await h.service.plan(operator, 'acme', { spec: specFor('acme', 1) })
    assert.equal(plan.specVersion, 1)
    assert.ok(plan.summary.create > 10)
    assert.deepEqual([...new Set(plan.changes.map((c) => c.layer))].sort(), [
      'compute',
      'ethernet',
      'infiniband',
      'perimeter',
      'storage',
    ])
    // A plan stores nothing.
    await assert.rejects(h.service.getSpec(operator, 'acme'), (e: Problem) => e.status === 404)

    const res = await h.service.apply(operator, 'acme', { spec: specFor('acme', 1) })
    assert.equal(res.executed, res.plan.changes.length)
    assert.equal(res.plan.resources!.networks.length, 2)
    const again = await h.service.plan(operator, 'acme')
    assert.equal(again.changes.length, 0, 'apply is idempotent: nothing left to do')
    const nvue = await readFile(join(h.dir, 'acme/ethernet/nvue/leaf1.yaml'), 'utf8')
    assert.match(nvue, /Vrf\d+/)

    const ev = h.events.events.find((e) => e.type === 'isolation.apply')!
    assert.equal(ev.details!.planHash, res.plan.hash)
    assert.equal(ev.outcome, 'success')
  })

  test('an apply refuses a stale plan hash', async () => {
    await assert.rejects(
      h.service.apply(operator, 'acme', { planHash: 'f'.repeat(64) }),
      (e: Problem) => e.status === 409,
    )
  })

  test('drift is reported per layer and object, and an apply repairs it', async () => {
    h.realms.add('acme')
    assert.equal((await h.service.verify(operator)).ok, true)
    await writeFile(join(h.dir, 'acme/firewall/ruleset.json'), '{"nftables":[]}')
    await rm(join(h.dir, 'acme/kubernetes/k8s-a.yaml'))
    await writeFile(join(h.dir, 'acme/storage/extra.txt'), 'x')
    const report = await h.service.verify(operator)
    assert.equal(report.ok, false)
    const drift = report.violations.filter((v) => v.kind === 'drift')
    assert.deepEqual(
      drift
        .map((v) => [v.layer, v.kind === 'drift' && v.object, v.kind === 'drift' && v.detail])
        .sort(),
      [
        ['compute', 'kubernetes:k8s-a.yaml', 'missing'],
        ['perimeter', 'firewall:ruleset.json', 'changed'],
        ['storage', 'storage:extra.txt', 'unexpected'],
      ],
    )
    const fix = await h.service.apply(operator, 'acme')
    assert.equal(fix.plan.summary.create + fix.plan.summary.change + fix.plan.summary.remove, 3)
    assert.equal((await h.service.verify(operator)).ok, true)
  })

  test('a tenant without its realm misses the identity layer', async () => {
    await h.service.apply(operator, 'beta', { spec: specFor('beta', 2) })
    const report = await h.service.verify(operator)
    assert.deepEqual(
      report.violations.map((v) => [v.kind, v.layer]),
      [['missing-layer', 'identity']],
    )
    h.realms.add('beta')
  })

  test('an update keeps numbers, a removed network goes to quarantine, and the old version rolls back', async () => {
    const before = (await h.service.getSpec(operator, 'acme')).version
    const v1 = (await h.service.plan(operator, 'acme')).resources!
    const one = { ...specFor('acme', 1, { networks: 1 }) }
    const res = await h.service.apply(operator, 'acme', { spec: one })
    assert.equal(res.plan.resources!.networks.length, 1)
    assert.equal(res.plan.resources!.networks[0]!.vlan, v1.networks[0]!.vlan)
    assert.equal(res.plan.resources!.vrf.id, v1.vrf.id)
    // Another tenant cannot take the released VLAN while it is in quarantine.
    const g = await h.service.apply(operator, 'gamma', { spec: specFor('gamma', 3) })
    const taken = new Set(g.plan.resources!.networks.map((n) => n.vlan))
    assert.ok(!taken.has(v1.networks[1]!.vlan))
    // Rolling back re-applies version `before` as the newest version and takes the VLAN back.
    const back = await h.service.apply(operator, 'acme', { version: before })
    assert.equal(back.plan.specVersion, before + 2)
    assert.equal(back.plan.resources!.networks[1]!.vlan, v1.networks[1]!.vlan)
    h.realms.add('gamma')
    assert.equal((await h.service.verify(operator)).ok, true)
  })

  test('destroy removes every artifact and quarantines the numbers', async () => {
    const r = (await h.service.plan(operator, 'gamma')).resources!
    const d = await h.service.destroy(operator, 'gamma')
    assert.equal(d.plan.summary.remove, d.executed)
    assert.ok(d.executed > 0)
    assert.equal((await h.service.verify(operator)).ok, true)
    const delta = await h.service.apply(operator, 'delta', { spec: specFor('delta', 4) })
    assert.notEqual(delta.plan.resources!.vrf.id, r.vrf.id)
    h.clock.advance(h.config.quarantine + 1)
    await h.service.apply(operator, 'eps', { spec: specFor('eps', 5) })
    const left = await h.t.db.query(`SELECT 1 FROM isolation.allocations WHERE tenant = 'gamma'`)
    assert.equal(left.rows.length, 0, 'after the quarantine the values are free again')
    const ev = h.events.events.find((e) => e.type === 'isolation.destroy')!
    assert.equal(ev.details!.planHash, d.plan.hash)
  })

  test('a crash mid-apply is resumed by the next apply after the lease', async () => {
    const spec = specFor('zeta', 6)
    // Make the firewall driver fail once: the first steps are recorded, the run stays unfinished.
    const { FileDriver } = await import('../../src/isolation/drivers/files.ts')
    const orig = FileDriver.prototype.apply
    let calls = 0
    FileDriver.prototype.apply = async function (this: InstanceType<typeof FileDriver>, t, o) {
      if (++calls === 5) throw new Error('device unreachable')
      return orig.call(this, t, o)
    }
    try {
      await assert.rejects(
        h.service.apply(operator, 'zeta', { spec }),
        (e: Problem) => e.status === 502,
      )
    } finally {
      FileDriver.prototype.apply = orig
    }
    // A killed process leaves its run 'running': others wait for its lease, then take over.
    await h.t.db.query(`UPDATE isolation.runs SET status = 'running', finished_at = NULL
      WHERE id = (SELECT max(id) FROM isolation.runs WHERE tenant = 'zeta')`)
    await assert.rejects(h.service.apply(operator, 'zeta'), (e: Problem) => e.status === 409)
    h.clock.advance(h.config.applyLease + 1)
    const resumed = await h.service.apply(operator, 'zeta')
    assert.ok(resumed.executed > 0)
    assert.equal((await h.service.plan(operator, 'zeta')).changes.length, 0)
    assert.ok(h.events.events.some((e) => e.type === 'isolation.apply.failed'))
  })

  test('only platform operators allowed by the PDP may act; denials are audited', async () => {
    const tenantAdmin = {
      ...operator,
      realm: 'acme',
      actor: { kind: 'user' as const, id: 'u1', realm: 'acme' },
    }
    await assert.rejects(h.service.apply(tenantAdmin, 'acme'), (e: Problem) => e.status === 403)
    await assert.rejects(h.service.verify(tenantAdmin), (e: Problem) => e.status === 403)
    h.pdp.allow = (r) => r.action.id !== 'tenantspec.destroy'
    await assert.rejects(h.service.destroy(operator, 'acme'), (e: Problem) => e.status === 403)
    h.pdp.allow = () => {
      throw new Error('pdp down')
    }
    await assert.rejects(h.service.plan(operator, 'acme'), (e: Problem) => e.status === 403)
    h.pdp.allow = () => true
    assert.ok(h.events.events.filter((e) => e.outcome === 'denied').length >= 4)
    const req = h.pdp.requests.find((r) => r.action.id === 'tenantspec.apply')!
    assert.deepEqual(req.resource, { type: 'Dflare::TenantSpec', id: 'acme/spec' })
    assert.deepEqual(req.entities![0]!.parents, [{ type: 'Dflare::Tenant', id: 'acme' }])
  })

  test('when the audit event cannot be recorded, nothing changes (fail closed)', async () => {
    const record = h.events.record.bind(h.events)
    h.events.record = async (e: SecurityEvent) => {
      if (e.type === 'isolation.apply') throw new Error('audit log unavailable')
      return record(e)
    }
    try {
      await assert.rejects(
        h.service.apply(operator, 'omega', { spec: specFor('omega', 9) }),
        /audit log unavailable/,
      )
    } finally {
      h.events.record = record
    }
    const left = await h.t.db.query(
      `SELECT 'a' FROM isolation.allocations WHERE tenant = 'omega'
       UNION ALL SELECT 'c' FROM isolation.claims WHERE tenant = 'omega'
       UNION ALL SELECT 's' FROM isolation.specs WHERE tenant = 'omega'
       UNION ALL SELECT 'r' FROM isolation.runs WHERE tenant = 'omega'`,
    )
    assert.equal(left.rows.length, 0)
    await assert.rejects(readFile(join(h.dir, 'omega/firewall/ruleset.json')), { code: 'ENOENT' })
  })

  test('invalid specs name the field', async () => {
    const bad = { ...specFor('acme', 1), networks: [{ name: 'n', cidr: '10.0.0.1/24' }], typo: 1 }
    await assert.rejects(h.service.apply(operator, 'acme', { spec: bad }), (e: Problem) => {
      const fields = (e.extensions.errors as { field: string }[]).map((x) => x.field)
      return e.status === 400 && fields.includes('networks[0].cidr') && fields.includes('typo')
    })
  })
})
