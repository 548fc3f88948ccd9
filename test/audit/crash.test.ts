import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { auditMigrations } from '../../src/audit/migrations.ts'
import { AuditSequencer } from '../../src/audit/sequencer.ts'
import { verifyDatabase } from '../../src/audit/tools.ts'
import { migratedDatabase, testDatabaseUrl } from '../support/db.ts'

const WRITER = fileURLToPath(new URL('./crash-writer.ts', import.meta.url))

describe('audit durability', { skip: !testDatabaseUrl && 'needs DFLARE_TEST_DATABASE_URL' }, () => {
  it('a writer killed with SIGKILL mid-burst loses no acknowledged event', async () => {
    const t = await migratedDatabase([auditMigrations])
    const home = await mkdtemp(join(tmpdir(), 'dflare-crash-'))
    try {
      const child = spawn(process.execPath, [WRITER, t.url!, home], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      const acked: number[] = []
      let buffer = ''
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject)
        child.on('exit', () => resolve())
        child.stdout.on('data', (chunk: Buffer) => {
          buffer += chunk.toString()
          const lines = buffer.split('\n')
          buffer = lines.pop()!
          for (const l of lines) acked.push(Number(l))
          if (acked.length >= 2000 && !child.killed) child.kill('SIGKILL')
        })
      })
      assert.ok(acked.length >= 2000)
      // What the killed process had queued but not integrated, the next sequencer integrates.
      await new AuditSequencer({
        db: t.db,
        batch: 500,
        delayMs: 0,
        pollMs: 1000,
        onError: () => {},
      }).drain()
      const queued = await t.db.query('SELECT 1 FROM audit.queue')
      assert.equal(queued.rowCount, 0)
      const { rows } = await t.db.query<{ correlation_id: string }>(
        'SELECT correlation_id FROM audit.events',
      )
      const stored = new Set(rows.map((r) => r.correlation_id))
      const lost = acked.filter((i) => !stored.has(`ack-${i}`))
      assert.deepEqual(lost, [])
      const report = await verifyDatabase(t.db)
      assert.ok(report.ok, JSON.stringify(report))
    } finally {
      await t.close()
      await rm(home, { recursive: true, force: true })
    }
  })
})
