import type { Clock } from '../core/clock.ts'
import type { Db } from '../core/db/index.ts'
import type { ObjectStore } from '../core/objects/types.ts'
import { appendLeaves, type Leaf } from './append.ts'
import { BUNDLE_HEADER, type BundleLine, eventLine, parseLine } from './bundle.ts'
import type { CheckpointService } from './checkpoints.ts'
import { readEntries } from './db-source.ts'
import type { KeyRing } from './keys.ts'
import { leafHash } from './merkle.ts'
import { openCheckpoint, parseVerifierKey, type VerifierKey } from './note.ts'
import { type LogEntry, type LogReport, verifyLog } from './verify.ts'

export const SEGMENT_PREFIX = 'audit/v1/'
/** Most events per sealed segment (bounds memory when a backlog is sealed). */
export const SEGMENT_MAX = 50_000
const SEGMENT_KEY = /^audit\/v1\/([a-z0-9-]+)\/(\d{20})-(\d{20})\.ndjson$/

const pad = (n: number) => String(n).padStart(20, '0')

export function segmentKey(log: string, first: number, end: number) {
  return `${SEGMENT_PREFIX}${log}/${pad(first)}-${pad(end)}.ndjson`
}

export interface SealedSegment {
  log: string
  first: number
  count: number
  key: string
}

interface SegmentRef {
  log: string
  first: number
  end: number
  key: string
}

/** Segments in the store, per log, in index order. */
async function listSegments(objects: ObjectStore): Promise<Map<string, SegmentRef[]>> {
  const byLog = new Map<string, SegmentRef[]>()
  for await (const info of objects.list(SEGMENT_PREFIX)) {
    const m = SEGMENT_KEY.exec(info.key)
    if (!m) continue
    const ref = { log: m[1]!, first: Number(m[2]), end: Number(m[3]), key: info.key }
    byLog.set(ref.log, [...(byLog.get(ref.log) ?? []), ref])
  }
  for (const list of byLog.values()) list.sort((a, b) => a.first - b.first)
  return byLog
}

async function readSegment(objects: ObjectStore, key: string): Promise<BundleLine[]> {
  const body = await objects.get(key)
  if (!body) throw new Error(`segment ${key} disappeared`)
  const lines = body.toString('utf8').split('\n').filter(Boolean)
  const parsed = lines.map((l, i) => parseLine(l, i + 1))
  if (parsed[0]?.kind !== 'dflare-audit') throw new Error(`segment ${key} has no header`)
  return parsed
}

/**
 * Seals new events into write-once segments in the object store: each segment holds a log's
 * events [first, end), the signed checkpoint at `end` and the verifier keys, so the store alone
 * is enough to verify and restore.
 */
export class BackupService {
  readonly #db: Db
  readonly #objects: ObjectStore
  readonly #keys: KeyRing
  readonly #checkpoints: CheckpointService
  readonly #retentionMs: number
  readonly #clock: Clock

  constructor(o: {
    db: Db
    objects: ObjectStore
    keys: KeyRing
    checkpoints: CheckpointService
    retentionMs: number
    clock: Clock
  }) {
    this.#db = o.db
    this.#objects = o.objects
    this.#keys = o.keys
    this.#checkpoints = o.checkpoints
    this.#retentionMs = o.retentionMs
    this.#clock = o.clock
  }

  /** Seals every event not yet in a segment; returns the segments written. */
  async seal(): Promise<SealedSegment[]> {
    const { rows } = await this.#db.query<{ log: string; size: number; sealed: number }>(
      `SELECT h.log, h.size,
              COALESCE((SELECT max(s.first + s.count) FROM audit.segments s WHERE s.log = h.log), 0) AS sealed
       FROM audit.heads h ORDER BY h.log`,
    )
    const out: SealedSegment[] = []
    const retain = await this.#objects.supportsRetention()
    for (const { log, size, sealed } of rows) {
      for (let first = sealed; first < size; first += SEGMENT_MAX) {
        const end = Math.min(size, first + SEGMENT_MAX)
        out.push(await this.#sealOne(log, first, end, retain))
      }
    }
    return out
  }

  async #sealOne(log: string, first: number, end: number, retain: boolean): Promise<SealedSegment> {
    const cp = await this.#checkpoints.issueAt(log, end)
    const lines = [JSON.stringify(BUNDLE_HEADER)]
    for (const k of await this.#keys.verifierKeys())
      lines.push(JSON.stringify({ kind: 'key', vkey: k.vkey }))
    lines.push(JSON.stringify({ kind: 'checkpoint', log, note: cp.note }))
    let count = 0
    for await (const e of readEntries(this.#db, log, first, end)) {
      lines.push(eventLine(log, e))
      count++
    }
    if (count !== end - first)
      throw new Error(`audit log ${log} is missing events in [${first}, ${end})`)
    const body = Buffer.from(`${lines.join('\n')}\n`, 'utf8')
    const key = segmentKey(log, first, end)
    const retainUntil = retain
      ? new Date(this.#clock.now().getTime() + this.#retentionMs)
      : undefined
    const existing = await this.#objects.head(key)
    if (existing) {
      // A previous run wrote the object but died before recording it.
      const same = (await this.#objects.get(key))?.equals(body)
      if (!same) throw new Error(`segment ${key} already exists with different content`)
    } else {
      await this.#objects.put(key, body, {
        contentType: 'application/x-ndjson',
        ifNoneMatch: true,
        ...(retainUntil ? { retainUntil } : {}),
      })
    }
    await this.#db.query(
      'INSERT INTO audit.segments (log, first, count, object_key, retain_until) VALUES ($1, $2, $3, $4, $5)',
      [log, first, end - first, key, retainUntil ?? null],
    )
    return { log, first, count: end - first, key }
  }
}

/**
 * Verifies the backup from the object store alone: segments must be contiguous from 0, and the
 * events recomputed across them must match every segment's signed checkpoint.
 */
export async function verifyStore(
  objects: ObjectStore,
  pinned?: readonly VerifierKey[],
): Promise<{ logs: LogReport[]; trust: 'pinned' | 'embedded' }> {
  const logs: LogReport[] = []
  const embedded = new Map<string, VerifierKey>()
  for (const [log, segments] of await listSegments(objects)) {
    const checkpoints: string[] = []
    let expected = 0
    let gap: number | undefined
    for (const s of segments) {
      if (s.first !== expected) {
        gap = expected
        break
      }
      expected = s.end
      for (const line of await readSegment(objects, s.key)) {
        if (line.kind === 'key') embedded.set(line.vkey, parseVerifierKey(line.vkey))
        if (line.kind === 'checkpoint' && line.log === log) checkpoints.push(line.note)
      }
    }
    if (gap !== undefined) {
      logs.push({
        log,
        ok: false,
        firstBadIndex: gap,
        reason: `the segment holding event ${gap} is missing`,
      })
      continue
    }
    const keys = pinned && pinned.length > 0 ? pinned : [...embedded.values()]
    async function* entries(): AsyncGenerator<LogEntry> {
      for (const s of segments)
        for (const line of await readSegment(objects, s.key)) {
          if (line.kind !== 'event') continue
          if (line.log !== log || line.index < s.first || line.index >= s.end)
            throw new Error(`segment ${s.key} holds a foreign event`)
          yield {
            index: line.index,
            body: line.body,
            ...(line.leafHash ? { leafHash: Buffer.from(line.leafHash, 'base64') } : {}),
          }
        }
    }
    logs.push(
      await verifyLog({ log, entries: entries(), checkpoints }, keys, { requireSignedEnd: true }),
    )
  }
  return { logs, trust: pinned && pinned.length > 0 ? 'pinned' : 'embedded' }
}

/**
 * Restores every log from the object store into an empty, migrated database: events are
 * re-appended (recomputing leaves, nodes and heads), keys, checkpoints and segment records are
 * copied. Verify afterwards: the signed checkpoints only match if the events are genuine.
 */
export async function restoreFromStore(
  objects: ObjectStore,
  db: Db,
): Promise<{ logs: number; events: number }> {
  const { rows } = await db.query<{ n: number }>(
    'SELECT (SELECT count(*) FROM audit.heads) + (SELECT count(*) FROM audit.events) AS n',
  )
  if (Number(rows[0]!.n) > 0) throw new Error('restore needs an empty audit log')
  let events = 0
  const segmentsByLog = await listSegments(objects)
  for (const [log, segments] of segmentsByLog) {
    for (const s of segments) {
      const lines = await readSegment(objects, s.key)
      await db.transaction(async (tx) => {
        for (const line of lines) {
          if (line.kind !== 'key') continue
          const vk = parseVerifierKey(line.vkey)
          await tx.query(
            'INSERT INTO audit.keys (key_id, name, vkey) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
            [vk.id.toString('hex'), vk.name, vk.vkey],
          )
        }
        const leaves: Leaf[] = []
        for (const line of lines)
          if (line.kind === 'event' && line.log === log)
            leaves.push({ body: line.body, hash: leafHash(Buffer.from(line.body, 'utf8')) })
        if (leaves.length > 0) await appendLeaves(tx, log, leaves)
        events += leaves.length
        for (const line of lines) {
          if (line.kind !== 'checkpoint' || line.log !== log) continue
          const keys = await tx.query<{ vkey: string }>('SELECT vkey FROM audit.keys')
          const cp = openCheckpoint(
            line.note,
            keys.rows.map((r) => parseVerifierKey(r.vkey)),
          )
          await tx.query(
            'INSERT INTO audit.checkpoints (log, size, root, key_id, note) VALUES ($1, $2, $3, $4, $5)',
            [log, cp.size, cp.root, cp.verifiedBy[0]!.id.toString('hex'), line.note],
          )
        }
        await tx.query(
          'INSERT INTO audit.segments (log, first, count, object_key) VALUES ($1, $2, $3, $4)',
          [log, s.first, s.end - s.first, s.key],
        )
      })
    }
  }
  return { logs: segmentsByLog.size, events }
}
