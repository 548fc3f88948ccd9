import type { Db } from '../core/db/index.ts'
import { BUNDLE_HEADER, eventLine } from './bundle.ts'
import type { CheckpointService } from './checkpoints.ts'
import { listLogs, readCheckpointNotes, readEntries } from './db-source.ts'
import type { KeyRing } from './keys.ts'

/**
 * Writes logs as a verifiable export bundle (see bundle.ts). Each log is checkpointed first, and
 * its events are exported up to that signed size, so the export verifies on its own.
 */
export async function* exportBundle(
  db: Db,
  keys: KeyRing,
  checkpoints: CheckpointService,
  logs?: readonly string[],
): AsyncGenerator<string> {
  const selected = logs ?? (await listLogs(db))
  const signed = []
  for (const log of selected) signed.push(await checkpoints.issue(log))
  yield JSON.stringify(BUNDLE_HEADER)
  for (const k of await keys.verifierKeys()) yield JSON.stringify({ kind: 'key', vkey: k.vkey })
  for (const cp of signed) {
    const notes = (await readCheckpointNotes(db, cp.log)).filter((n) => {
      const size = Number(n.split('\n')[1])
      return size <= cp.size
    })
    for (const note of notes) yield JSON.stringify({ kind: 'checkpoint', log: cp.log, note })
    for await (const e of readEntries(db, cp.log, 0, cp.size)) yield eventLine(cp.log, e)
  }
}
