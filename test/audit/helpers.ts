import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { Registry } from 'prom-client'
import { type Audit, createAudit } from '../../src/audit/component.ts'
import { auditMigrations } from '../../src/audit/migrations.ts'
import { ManualClock } from '../../src/core/clock.ts'
import type { Db } from '../../src/core/db/index.ts'
import { MemoryEventSink, type SecurityEvent } from '../../src/core/events.ts'
import type { ObjectStore } from '../../src/core/objects/types.ts'
import type { Runtime } from '../../src/server/component.ts'
import { loadDflareConfig } from '../../src/server/config.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'
import { MemoryObjectStore } from './memory-store.ts'

export interface AuditFixture {
  t: TestDatabase
  db: Db
  audit: Audit
  home: string
  objects: ObjectStore
  clock: ManualClock
  close(): Promise<void>
}

export function runtimeFor(
  db: Db,
  home: string,
  objects: ObjectStore,
  clock: ManualClock,
  env: Record<string, string> = {},
): Runtime {
  const { config } = loadDflareConfig({
    env: { DFLARE_HOME: home, DFLARE_AUDIT_ORIGIN: 'audit.test/log', ...env },
    file: '/dev/null',
  })
  return {
    config,
    db,
    objects,
    log: pino({ level: 'silent' }),
    metrics: new Registry(),
    clock,
    events: new MemoryEventSink(),
    publicUrl: new URL('https://127.0.0.1:8443'),
  }
}

export async function auditFixture(): Promise<AuditFixture> {
  const t = await migratedDatabase([auditMigrations])
  const home = await mkdtemp(join(tmpdir(), 'dflare-audit-'))
  const objects = new MemoryObjectStore()
  const clock = new ManualClock(Date.UTC(2026, 0, 1))
  const audit = await createAudit(runtimeFor(t.db, home, objects, clock))
  return {
    t,
    db: t.db,
    audit,
    home,
    objects,
    clock,
    async close() {
      await audit.sink.close()
      await audit.sequencer.stop()
      await t.close()
      await rm(home, { recursive: true, force: true })
    },
  }
}

export function event(i: number, over: Partial<SecurityEvent> = {}): SecurityEvent {
  return {
    type: 'api.request',
    tenant: 'acme',
    actor: { kind: 'user', id: `user-${i % 7}` },
    action: i % 2 ? 'api:CreateProject' : 'api:GetProject',
    resource: { type: 'project', id: `p-${i}` },
    outcome: i % 5 === 0 ? 'denied' : 'success',
    correlationId: `cid-${i}`,
    sourceIp: '10.0.0.1',
    userAgent: 'test/1.0',
    ...over,
  }
}

/** Records n events and integrates them into their logs. */
export async function recordMany(audit: Audit, n: number, over: Partial<SecurityEvent> = {}) {
  await Promise.all(Array.from({ length: n }, (_, i) => audit.sink.record(event(i, over))))
  await audit.sequencer.drain()
}
