import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Db } from '../core/db/index.ts'
import type { ObjectStore } from '../core/objects/types.ts'
import { verifyStore } from './backup.ts'
import { databaseSource, listLogs } from './db-source.ts'
import { parseVerifierKey, type VerifierKey } from './note.ts'
import { type LogReport, verifyLog } from './verify.ts'
import { verifyBundle } from './verify-bundle.ts'

export interface VerifyReport {
  ok: boolean
  source: 'database' | 'file' | 'store'
  /**
   * Where the trusted checkpoint keys came from: `pinned` (given by the caller), `local` (the
   * private keys in this host's key directory) or `embedded` (the data's own key list).
   */
  trust: 'pinned' | 'local' | 'embedded'
  logs: LogReport[]
  /**
   * Database only: events recorded (durable) but not yet integrated into their log by the
   * sequencer, so not covered by this verification. Normally 0, or a handful while writes run.
   */
  queued?: number
}

export function parseKeys(vkeys: readonly string[]): VerifierKey[] {
  return vkeys.map(parseVerifierKey)
}

/** Verifies logs in a live database (all logs, or the ones named). */
export async function verifyDatabase(
  db: Db,
  options: {
    logs?: readonly string[]
    keys?: readonly VerifierKey[]
    trust?: 'pinned' | 'local'
  } = {},
): Promise<VerifyReport> {
  const pinned = options.keys && options.keys.length > 0
  const { rows } = await db.query<{ vkey: string }>('SELECT vkey FROM audit.keys')
  const keys = pinned ? options.keys! : rows.map((r) => parseVerifierKey(r.vkey))
  const logs: LogReport[] = []
  for (const log of options.logs ?? (await listLogs(db)))
    logs.push(await verifyLog(await databaseSource(db, log), keys))
  const queued = await db.query<{ n: number }>(
    options.logs
      ? 'SELECT count(*)::int AS n FROM audit.queue WHERE log = ANY($1::text[])'
      : 'SELECT count(*)::int AS n FROM audit.queue',
    options.logs ? [[...options.logs]] : [],
  )
  return {
    ok: logs.every((l) => l.ok),
    source: 'database',
    trust: pinned ? (options.trust ?? 'pinned') : 'embedded',
    logs,
    queued: queued.rows[0]!.n,
  }
}

export async function verifyFile(
  path: string,
  options: { logs?: readonly string[]; keys?: readonly VerifierKey[] } = {},
): Promise<VerifyReport> {
  const input = path === '-' ? process.stdin : createReadStream(path)
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })
  const r = await verifyBundle(lines, options.keys)
  const logs = options.logs ? r.logs.filter((l) => options.logs!.includes(l.log)) : r.logs
  return { ok: logs.every((l) => l.ok), source: 'file', trust: r.trust, logs }
}

export async function verifyObjectStore(
  store: ObjectStore,
  options: { logs?: readonly string[]; keys?: readonly VerifierKey[] } = {},
): Promise<VerifyReport> {
  const r = await verifyStore(store, options.keys)
  const logs = options.logs ? r.logs.filter((l) => options.logs!.includes(l.log)) : r.logs
  return { ok: logs.every((l) => l.ok), source: 'store', trust: r.trust, logs }
}

export function formatReport(r: VerifyReport): string {
  const lines = r.logs.map((l) =>
    l.ok
      ? `${l.log}: ok, ${l.size} events, root ${l.root}, ${l.checkpoints} signed checkpoints`
      : `${l.log}: FAILED at index ${l.firstBadIndex}: ${l.reason}`,
  )
  if (r.logs.length === 0) lines.push('no audit logs found')
  if (r.queued)
    lines.push(
      `note: ${r.queued} recorded events are still queued for integration and not covered (the audit host integrates them within moments)`,
    )
  if (r.trust === 'embedded')
    lines.push('note: checkpoint keys were taken from the data itself; pin them with --key')
  return `${lines.join('\n')}\n`
}

/** The pseudonym key if it exists (read-only tools never create one). */
export async function readPseudonymKey(keyDir: string): Promise<Buffer | undefined> {
  const raw = await readFile(join(keyDir, 'pseudonym.key'), 'utf8').catch(() => undefined)
  return raw ? Buffer.from(raw.trim(), 'base64') : undefined
}
