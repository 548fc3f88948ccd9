/** A small multi-tenant world in the entity store, shared by the authz tests. */

import type { Registry } from 'prom-client'
import type { EntityRecord } from '../../src/authz/contract.ts'
import { authzMigrations } from '../../src/authz/migrations.ts'
import type { Role } from '../../src/authz/schema.ts'
import { createAuthzService } from '../../src/authz/service.ts'
import { addRoleBinding, type RoleBindingInput, StoreWriter } from '../../src/authz/writer.ts'
import { ManualClock } from '../../src/core/clock.ts'
import type { Db } from '../../src/core/db/index.ts'
import { migratedDatabase } from '../support/db.ts'

const D = 'Dflare'
export const uid = (type: string, id: string) => ({ type: `${D}::${type}`, id })
export const action = (id: string) => ({ type: `${D}::Action`, id })

function e(
  type: string,
  id: string,
  tenant: string,
  parents: [string, string][] = [],
  attrs: Record<string, unknown> = {},
): EntityRecord {
  return { uid: uid(type, id), tenant, attrs, parents: parents.map(([t, i]) => uid(t, i)) }
}

export const WORLD: EntityRecord[] = [
  e('Tenant', 'platform', 'platform'),
  e('Tenant', 't1', 't1'),
  e('Tenant', 't2', 't2'),
  e('Domain', 'd1', 't1', [['Tenant', 't1']]),
  e('Domain', 'd2', 't1', [['Tenant', 't1']]),
  e('Project', 'p1', 't1', [['Domain', 'd1']]),
  e('Project', 'p2', 't1', [['Domain', 'd1']]),
  e('Project', 'p3', 't1', [['Domain', 'd2']]),
  e('Cluster', 'c1', 't1', [['Project', 'p1']]),
  e('NodePool', 'np1', 't1', [['Cluster', 'c1']]),
  e('Cluster', 'c2', 't1', [['Project', 'p2']]),
  e('Cluster', 'c3', 't1', [['Project', 'p3']]),
  e('Volume', 'secret-vol', 't1', [['Project', 'p1']], { classification: 'restricted' }),
  e('AuditLog', 't1-audit', 't1', [['Tenant', 't1']]),
  e('TenantSpec', 't1-spec', 't1', [['Tenant', 't1']]),
  e('Policy', 't1-policy', 't1', [['Tenant', 't1']]),
  e('Domain', 'e1', 't2', [['Tenant', 't2']]),
  e('Project', 'q1', 't2', [['Domain', 'e1']]),
  e('Cluster', 'x1', 't2', [['Project', 'q1']]),
  e('AuditLog', 't2-audit', 't2', [['Tenant', 't2']]),
  e('Group', 'devs', 't1', [['Domain', 'd1']]),
  ...[
    'tenant-admin',
    'domain-admin',
    'project-admin',
    'member',
    'viewer',
    'billing-viewer',
    'auditor',
    'nobody',
    'dev',
    'cleared',
  ].map((u) =>
    e(
      'User',
      u,
      't1',
      u === 'dev' ? [['Group', 'devs']] : [],
      u === 'cleared' ? { clearances: ['restricted'] } : {},
    ),
  ),
  e('User', 't2-admin', 't2'),
  e('User', 'op-admin', 'platform'),
  e('User', 'op-sec', 'platform'),
  e('ServiceAccount', 'ci', 't1', [['Project', 'p1']], {
    network: { __extn: { fn: 'ip', arg: '10.0.0.0/8' } },
  }),
]

const b = (
  tenant: string,
  user: string,
  role: Role,
  scopeType: 'Tenant' | 'Domain' | 'Project',
  scopeId: string,
  principalType: 'User' | 'Group' | 'ServiceAccount' = 'User',
): RoleBindingInput => ({
  tenant,
  principal: { type: principalType, id: user },
  role,
  scope: { type: scopeType, id: scopeId },
})

export const BINDINGS: RoleBindingInput[] = [
  b('t1', 'tenant-admin', 'tenant-admin', 'Tenant', 't1'),
  b('t1', 'domain-admin', 'domain-admin', 'Domain', 'd1'),
  b('t1', 'project-admin', 'project-admin', 'Project', 'p1'),
  b('t1', 'member', 'member', 'Project', 'p1'),
  b('t1', 'viewer', 'viewer', 'Project', 'p1'),
  b('t1', 'billing-viewer', 'billing-viewer', 'Tenant', 't1'),
  b('t1', 'auditor', 'auditor', 'Tenant', 't1'),
  b('t1', 'devs', 'member', 'Project', 'p2', 'Group'),
  b('t1', 'cleared', 'member', 'Project', 'p1'),
  b('t1', 'ci', 'member', 'Project', 'p1', 'ServiceAccount'),
  b('t2', 't2-admin', 'tenant-admin', 'Tenant', 't2'),
  b('platform', 'op-admin', 'platform-admin', 'Tenant', 'platform'),
  b('platform', 'op-sec', 'security-officer', 'Tenant', 'platform'),
]

export async function seed(db: Db) {
  const writer = new StoreWriter()
  await db.transaction(async (tx) => {
    await writer.upsert(tx, WORLD)
    for (const binding of BINDINGS) await addRoleBinding(tx, binding)
  })
}

export const START = Date.UTC(2026, 5, 1, 12)
export const nowSeconds = () => Math.floor(START / 1000)
export const MFA = { amr: ['pwd', 'mfa'], auth_time: nowSeconds() - 60 }

export async function world(options: { metrics?: Registry } = {}) {
  const t = await migratedDatabase([authzMigrations])
  await seed(t.db)
  const clock = new ManualClock(START)
  const service = createAuthzService({ db: t.db, clock, metrics: options.metrics })
  await service.start()
  return {
    ...t,
    clock,
    service,
    async close() {
      await service.stop()
      await t.close()
    },
    decide: (
      principal: [string, string],
      act: string,
      resource: [string, string],
      context: Record<string, unknown> = {},
    ) =>
      service.pdp.decide({
        principal: uid(...principal),
        action: action(act),
        resource: uid(...resource),
        context,
      }),
  }
}
