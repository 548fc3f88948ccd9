import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { MFA, world } from './fixture.ts'

type W = Awaited<ReturnType<typeof world>>
let w: W
before(async () => {
  w = await world()
})
after(async () => {
  await w.close()
})

type Case = [
  user: string,
  action: string,
  resource: [string, string],
  expected: 'allow' | 'deny',
  ctx?: Record<string, unknown>,
]

const U = (id: string): [string, string] => ['User', id]

// Role x scope matrix: every built-in role, bound at its scope, on resources inside and outside.
const cases: Case[] = [
  // tenant-admin at org scope: everything in t1, inherited down to node pools
  ['tenant-admin', 'cluster.update', ['Cluster', 'c3'], 'allow'],
  ['tenant-admin', 'nodepool.update', ['NodePool', 'np1'], 'allow'],
  ['tenant-admin', 'domain.create', ['Domain', 'd2'], 'allow'],
  ['tenant-admin', 'policy.update', ['Policy', 't1-policy'], 'deny'], // sensitive without MFA
  ['tenant-admin', 'policy.update', ['Policy', 't1-policy'], 'allow', MFA],
  ['tenant-admin', 'auditlog.read', ['AuditLog', 't1-audit'], 'allow'],
  ['tenant-admin', 'tenant.delete', ['Tenant', 't1'], 'deny', MFA], // platform-only action
  ['tenant-admin', 'cluster.read', ['Cluster', 'x1'], 'deny'], // other tenant
  // domain-admin at d1: projects p1, p2 and their resources; not d2
  ['domain-admin', 'cluster.update', ['Cluster', 'c1'], 'allow'],
  ['domain-admin', 'project.create', ['Project', 'p2'], 'allow'],
  ['domain-admin', 'cluster.update', ['Cluster', 'c3'], 'deny'],
  ['domain-admin', 'domain.update', ['Domain', 'd1'], 'allow'],
  ['domain-admin', 'domain.update', ['Domain', 'd2'], 'deny'],
  ['domain-admin', 'policy.read', ['Policy', 't1-policy'], 'deny'],
  // project-admin at p1
  ['project-admin', 'cluster.delete', ['Cluster', 'c1'], 'deny'], // sensitive without MFA
  ['project-admin', 'cluster.delete', ['Cluster', 'c1'], 'allow', MFA],
  ['project-admin', 'project.update', ['Project', 'p1'], 'allow'],
  ['project-admin', 'project.update', ['Project', 'p2'], 'deny'],
  ['project-admin', 'domain.update', ['Domain', 'd1'], 'deny'],
  // member at p1: workloads, no IAM
  ['member', 'cluster.create', ['Cluster', 'c1'], 'allow'],
  ['member', 'nodepool.update', ['NodePool', 'np1'], 'allow'],
  ['member', 'project.update', ['Project', 'p1'], 'deny'],
  ['member', 'cluster.update', ['Cluster', 'c2'], 'deny'],
  // viewer at p1: read only
  ['viewer', 'cluster.read', ['Cluster', 'c1'], 'allow'],
  ['viewer', 'cluster.list', ['Project', 'p1'], 'allow'],
  ['viewer', 'cluster.update', ['Cluster', 'c1'], 'deny'],
  ['viewer', 'cluster.read', ['Cluster', 'c2'], 'deny'],
  // billing-viewer at org
  ['billing-viewer', 'billing.read', ['Tenant', 't1'], 'allow'],
  ['billing-viewer', 'billing.read', ['Project', 'p3'], 'allow'],
  ['billing-viewer', 'cluster.read', ['Cluster', 'c1'], 'deny'],
  // auditor at org: read audit only
  ['auditor', 'auditlog.read', ['AuditLog', 't1-audit'], 'allow'],
  ['auditor', 'auditlog.export', ['AuditLog', 't1-audit'], 'deny', MFA],
  ['auditor', 'cluster.read', ['Cluster', 'c1'], 'deny'],
  ['auditor', 'auditlog.read', ['AuditLog', 't2-audit'], 'deny'],
  // group membership: devs are members of p2
  ['dev', 'cluster.update', ['Cluster', 'c2'], 'allow'],
  ['dev', 'cluster.update', ['Cluster', 'c1'], 'deny'],
  // data classification
  ['member', 'volume.read', ['Volume', 'secret-vol'], 'deny'],
  ['cleared', 'volume.read', ['Volume', 'secret-vol'], 'allow'],
  // nobody
  ['nobody', 'cluster.read', ['Cluster', 'c1'], 'deny'],
  // platform roles reach every tenant; security officer is read/revoke only
  ['op-admin', 'cluster.update', ['Cluster', 'x1'], 'allow'],
  ['op-admin', 'tenant.delete', ['Tenant', 't2'], 'allow', MFA],
  ['op-admin', 'tenant.delete', ['Tenant', 't2'], 'deny'],
  ['op-sec', 'auditlog.read', ['AuditLog', 't2-audit'], 'allow'],
  ['op-sec', 'policy.read', ['Policy', 't1-policy'], 'allow'],
  ['op-sec', 'cluster.update', ['Cluster', 'c1'], 'deny'],
  ['t2-admin', 'cluster.update', ['Cluster', 'x1'], 'allow'],
  ['t2-admin', 'cluster.read', ['Cluster', 'c1'], 'deny'],
]

describe('built-in roles at each scope', () => {
  for (const [user, act, resource, expected, ctx] of cases) {
    test(`${user} ${act} ${resource.join(':')}${ctx ? ' (mfa)' : ''} -> ${expected}`, async () => {
      const d = await w.decide(U(user), act, resource, ctx)
      assert.equal(d.decision, expected, d.reason)
      if (expected === 'allow') assert.ok(d.determining.every((id) => id.startsWith('binding:')))
    })
  }
})

describe('guard rails', () => {
  test('MFA-required action denied without mfa in amr, and with a stale authentication', async () => {
    const noMfa = await w.decide(U('project-admin'), 'certificate.issue', ['Cluster', 'c1'], {
      amr: ['pwd'],
      auth_time: MFA.auth_time,
    })
    assert.equal(noMfa.decision, 'deny')
    const issue = await w.decide(U('tenant-admin'), 'rolebinding.create', ['Project', 'p1'], {
      amr: ['pwd'],
    })
    assert.deepEqual(issue.determining, ['platform.mfa-for-sensitive-actions'])
    const stale = await w.decide(U('tenant-admin'), 'rolebinding.create', ['Project', 'p1'], {
      amr: ['mfa'],
      auth_time: MFA.auth_time - 3600,
    })
    assert.deepEqual(stale.determining, ['platform.mfa-for-sensitive-actions'])
    const ok = await w.decide(U('tenant-admin'), 'rolebinding.create', ['Project', 'p1'], MFA)
    assert.equal(ok.decision, 'allow', ok.reason)
  })

  test('the caller cannot fake the clock through context.now', async () => {
    const d = await w.decide(U('tenant-admin'), 'rolebinding.create', ['Project', 'p1'], {
      amr: ['mfa'],
      auth_time: 1,
      now: 2,
    })
    assert.equal(d.decision, 'deny')
  })

  test('cross-tenant access is denied by the platform forbid', async () => {
    const d = await w.decide(U('tenant-admin'), 'cluster.read', ['Cluster', 'x1'])
    assert.equal(d.decision, 'deny')
    assert.deepEqual(d.determining, ['platform.tenant-isolation'])
  })

  test('a project-scoped token only reaches its project', async () => {
    const scoped = { scope_project: { __entity: { type: 'Dflare::Project', id: 'p1' } } }
    assert.equal(
      (await w.decide(U('tenant-admin'), 'cluster.read', ['Cluster', 'c1'], scoped)).decision,
      'allow',
    )
    const d = await w.decide(U('tenant-admin'), 'cluster.read', ['Cluster', 'c3'], scoped)
    assert.deepEqual(d.determining, ['platform.token-scope'])
  })

  test('a network-pinned service account acts only from its network', async () => {
    const sa: [string, string] = ['ServiceAccount', 'ci']
    const inside = { ip: { __extn: { fn: 'ip', arg: '10.1.2.3' } } }
    const outside = { ip: { __extn: { fn: 'ip', arg: '192.0.2.1' } } }
    assert.equal(
      (await w.decide(sa, 'cluster.update', ['Cluster', 'c1'], inside)).decision,
      'allow',
    )
    assert.equal(
      (await w.decide(sa, 'cluster.update', ['Cluster', 'c1'], outside)).decision,
      'deny',
    )
    assert.equal((await w.decide(sa, 'cluster.update', ['Cluster', 'c1'])).decision, 'deny')
  })

  test('unknown principals, resources and actions are denied', async () => {
    assert.equal(
      (await w.decide(U('ghost'), 'cluster.read', ['Cluster', 'c1'])).reason,
      'unknown principal',
    )
    assert.equal(
      (await w.decide(U('viewer'), 'cluster.read', ['Cluster', 'ghost'])).reason,
      'unknown resource',
    )
    assert.match(
      (await w.decide(U('viewer'), 'cluster.explode', ['Cluster', 'c1'])).reason,
      /unknown action/,
    )
  })

  test('a request-scoped entity (the resource being created) is used for the decision', async () => {
    const d = await w.service.pdp.decide({
      principal: { type: 'Dflare::User', id: 'member' },
      action: { type: 'Dflare::Action', id: 'cluster.create' },
      resource: { type: 'Dflare::Cluster', id: 'new' },
      context: {},
      entities: [
        {
          uid: { type: 'Dflare::Cluster', id: 'new' },
          tenant: 't1',
          attrs: {},
          parents: [{ type: 'Dflare::Project', id: 'p1' }],
        },
      ],
    })
    assert.equal(d.decision, 'allow', d.reason)
    const elsewhere = await w.service.pdp.decide({
      principal: { type: 'Dflare::User', id: 'member' },
      action: { type: 'Dflare::Action', id: 'cluster.create' },
      resource: { type: 'Dflare::Cluster', id: 'new' },
      context: {},
      entities: [
        {
          uid: { type: 'Dflare::Cluster', id: 'new' },
          tenant: 't2',
          attrs: {},
          parents: [{ type: 'Dflare::Project', id: 'q1' }],
        },
      ],
    })
    assert.equal(elsewhere.decision, 'deny')
  })

  test('a request-scoped entity cannot shadow a stored one', async () => {
    const d = await w.service.pdp.decide({
      principal: { type: 'Dflare::User', id: 'member' },
      action: { type: 'Dflare::Action', id: 'cluster.update' },
      resource: { type: 'Dflare::Cluster', id: 'c2' },
      context: {},
      // c2 really lives in p2; claiming it sits in p1 must not grant p1's member access.
      entities: [
        {
          uid: { type: 'Dflare::Cluster', id: 'c2' },
          tenant: 't1',
          attrs: {},
          parents: [{ type: 'Dflare::Project', id: 'p1' }],
        },
      ],
    })
    assert.equal(d.decision, 'deny')
    assert.match(d.reason, /shadows/)
  })

  test('entity writers cannot forge role-binding membership', async () => {
    await assert.rejects(
      w.db.transaction((tx) =>
        w.service.writer.upsert(tx, [
          {
            uid: { type: 'Dflare::User', id: 'nobody' },
            tenant: 't1',
            attrs: {},
            parents: [{ type: 'Dflare::RoleBinding', id: 't1/Tenant/t1/tenant-admin' }],
          },
        ]),
      ),
      /managed by authz/,
    )
  })

  test('batch decisions keep their order', async () => {
    const mk = (u: string) => ({
      principal: { type: 'Dflare::User', id: u },
      action: { type: 'Dflare::Action', id: 'cluster.read' },
      resource: { type: 'Dflare::Cluster', id: 'c1' },
      context: {},
    })
    const ds = await w.service.pdp.decideBatch([mk('viewer'), mk('nobody'), mk('member')])
    assert.deepEqual(
      ds.map((d) => d.decision),
      ['allow', 'deny', 'allow'],
    )
  })
})
