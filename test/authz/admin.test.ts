import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { validateTenantPolicies } from '../../src/authz/admin.ts'
import { PolicyTextError } from '../../src/authz/cedar/parse.ts'
import { START, world } from './fixture.ts'

type W = Awaited<ReturnType<typeof world>>
let w: W
before(async () => {
  w = await world()
})
after(async () => {
  await w.close()
})

const publish = (tenant: string, text: string) =>
  w.db.transaction((tx) => w.service.admin.publish(tx, { tenant, text, author: 'test' }))

function problemsOf(fn: () => unknown) {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof PolicyTextError, String(err))
    return err.problems
  }
  assert.fail('expected a PolicyTextError')
}

test('syntax errors carry line and column', () => {
  const text = '@id("a")\npermit (principal, action, resource)\nwhen { 1 + };\n'
  const [p] = problemsOf(() => validateTenantPolicies('t1', text))
  assert.equal(p!.line, 3)
  assert.equal(p!.column, 12)
})

test('schema validation errors carry line and column', () => {
  const text = '@id("a")\npermit (principal, action, resource)\nwhen { principal.nope == 1 };\n'
  const [p] = problemsOf(() => validateTenantPolicies('t1', text))
  assert.equal(p!.line, 3)
  assert.equal(p!.policy, 'a')
  assert.match(p!.message, /nope/)
})

test('tenant policies cannot name another tenant, reuse reserved ids, or omit ids', () => {
  const other = problemsOf(() =>
    validateTenantPolicies(
      't1',
      '@id("x") permit (principal, action, resource in Dflare::Tenant::"t2");',
    ),
  )
  assert.match(other[0]!.message, /another tenant/)
  const binding = problemsOf(() =>
    validateTenantPolicies(
      't1',
      '@id("x") permit (principal in Dflare::RoleBinding::"t2/Tenant/t2/tenant-admin", action, resource);',
    ),
  )
  assert.match(binding[0]!.message, /another tenant/)
  const reserved = problemsOf(() =>
    validateTenantPolicies('t1', '@id("platform.x") forbid (principal, action, resource);'),
  )
  assert.match(reserved[0]!.message, /reserved/)
  const noId = problemsOf(() =>
    validateTenantPolicies('t1', 'permit (principal, action, resource);'),
  )
  assert.match(noId[0]!.message, /@id/)
})

test('a tenant policy trying to reach another tenant is denied by the platform forbid', async () => {
  await publish('t1', '@id("everyone-everything") permit (principal, action, resource);')
  const inside = await w.decide(['User', 'nobody'], 'cluster.read', ['Cluster', 'c1'])
  assert.equal(inside.decision, 'allow')
  assert.deepEqual(inside.determining, ['everyone-everything'])
  const outside = await w.decide(['User', 'nobody'], 'cluster.read', ['Cluster', 'x1'])
  assert.equal(outside.decision, 'deny')
  assert.deepEqual(outside.determining, ['platform.tenant-isolation'])
  // Platform-only actions and MFA stay out of reach too.
  const del = await w.decide(['User', 'nobody'], 'tenant.delete', ['Tenant', 't1'])
  assert.equal(del.decision, 'deny')
  assert.ok(del.determining.includes('platform.platform-only-actions'))
})

test('tenant forbids win inside the tenant; labels and time windows as conditions', async () => {
  const text = `
@id("labs-read") permit (principal, action == Dflare::Action::"cluster.read", resource)
when { resource.hasTag("team") && resource.getTag("team") == "labs" };

@id("office-hours") forbid (principal, action, resource)
unless { context has hour && context.hour >= 8 && context.hour < 18 };
`
  const v = await publish('t1', text)
  assert.ok(v >= 2)
  await w.db.transaction((tx) =>
    w.service.writer.upsert(tx, [
      {
        uid: { type: 'Dflare::Cluster', id: 'lab' },
        tenant: 't1',
        attrs: {},
        parents: [{ type: 'Dflare::Project', id: 'p3' }],
        tags: { team: 'labs' },
      },
    ]),
  )
  const lab = await w.decide(['User', 'nobody'], 'cluster.read', ['Cluster', 'lab'], { hour: 10 })
  assert.deepEqual(lab.determining, ['labs-read'])
  const notLab = await w.decide(['User', 'nobody'], 'cluster.read', ['Cluster', 'c1'], { hour: 10 })
  assert.equal(notLab.decision, 'deny')
  // The hour comes from the PDP's clock: a caller claiming 10:00 at night is still denied.
  w.clock.set(Date.UTC(2026, 5, 1, 23))
  const night = await w.decide(['User', 'viewer'], 'cluster.read', ['Cluster', 'c1'], { hour: 10 })
  assert.deepEqual(night.determining, ['office-hours'])
  w.clock.set(START)
  const day = await w.decide(['User', 'viewer'], 'cluster.read', ['Cluster', 'c1'])
  assert.equal(day.decision, 'allow')
})

test('versions, dry-run against recent requests, and rollback', async () => {
  const v1 = await publish(
    't1',
    '@id("viewers-too") permit (principal, action == Dflare::Action::"cluster.read", resource);',
  )
  // Record some traffic.
  for (const u of ['nobody', 'viewer', 'member'])
    await w.decide(['User', u], 'cluster.read', ['Cluster', 'c1'])
  const report = await w.service.dryRun(
    't1',
    '@id("nothing") forbid (principal, action, resource) when { false };',
  )
  assert.ok(report.replayed >= 3)
  const changed = report.changed.filter((c) => c.principal.id === 'nobody')
  assert.ok(changed.length > 0)
  assert.equal(changed[0]!.before.decision, 'allow')
  assert.equal(changed[0]!.after.decision, 'deny')
  // viewer keeps access through its binding, only the determining policies change.
  const v2 = await publish(
    't1',
    '@id("nothing") forbid (principal, action, resource) when { false };',
  )
  assert.equal(
    (await w.decide(['User', 'nobody'], 'cluster.read', ['Cluster', 'c1'])).decision,
    'deny',
  )
  await w.db.transaction((tx) => w.service.admin.rollback(tx, 't1', v1))
  assert.equal(
    (await w.decide(['User', 'nobody'], 'cluster.read', ['Cluster', 'c1'])).decision,
    'allow',
  )
  const versions = await w.service.admin.versions('t1')
  assert.deepEqual(
    versions.filter((x) => x.active).map((x) => x.version),
    [v1],
  )
  assert.ok(versions.some((x) => x.version === v2))
})
