import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Decision, Pdp } from '../../src/authz/contract.ts'
import { ManualClock } from '../../src/core/clock.ts'
import { MemoryEventSink } from '../../src/core/events.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { Kek } from '../../src/pki/kek.ts'
import { pkiMigrations } from '../../src/pki/migrations.ts'
import { PkiService } from '../../src/pki/service.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'

// One migrated database per test file (creating one is the slow part); emptied per fixture.
let shared: Promise<TestDatabase> | undefined
export function sharedDatabase(): Promise<TestDatabase> {
  shared ??= migratedDatabase([pkiMigrations])
  return shared
}
process.once('beforeExit', () => {
  void shared?.then((d) => d.close())
})

export async function tempDir(): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'dflare-pki-'))
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

export function testKek(): Kek {
  return new Kek(Buffer.alloc(32, 7), 'env')
}

/** A PDP that allows exactly the listed (principal id, action, identity) triples. */
export class ListPdp implements Pdp {
  readonly calls: { principal: string; action: string; resource: string }[] = []
  readonly allowed: Set<string>
  constructor(allowed: Set<string>) {
    this.allowed = allowed
  }
  async decide(r: Parameters<Pdp['decide']>[0]): Promise<Decision> {
    this.calls.push({ principal: r.principal.id, action: r.action.id, resource: r.resource.id })
    const key = `${r.principal.id} ${r.action.id} ${r.resource.id}`
    return this.allowed.has(key)
      ? { decision: 'allow', determining: ['test'], errors: [], reason: 'listed' }
      : { decision: 'deny', determining: [], errors: [], reason: 'not listed' }
  }
}

export async function pkiFixture(options: { now?: Date; pdp?: Pdp; crlValidity?: number } = {}) {
  const tmp = await tempDir()
  const clock = new ManualClock(options.now ?? new Date())
  const kek = testKek()
  const opened = await openCa({ dir: join(tmp.dir, 'pki'), kek, now: clock.now() })
  const database = await sharedDatabase()
  await database.db.query('TRUNCATE pki.certificates, pki.crl_numbers')
  const events = new MemoryEventSink()
  const service = new PkiService({
    db: database.db,
    ca: opened.ca,
    events,
    clock,
    pdp: options.pdp,
    policy: {
      trustDomain: 'dflare.local',
      serviceCertTtl: 86_400_000,
      crlValidity: options.crlValidity ?? 3_600_000,
      expiryWarning: 7 * 86_400_000,
    },
  })
  return {
    dir: join(tmp.dir, 'pki'),
    home: tmp.dir,
    kek,
    clock,
    events,
    service,
    db: database.db,
    ca: opened.ca,
    async close() {
      await tmp.cleanup()
    },
  }
}
