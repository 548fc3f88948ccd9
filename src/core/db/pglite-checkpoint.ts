/**
 * Checkpoints for the embedded database. A PostgreSQL server's checkpointer process runs them in
 * the background, every `checkpoint_timeout` or once enough WAL is written; PGlite is one backend
 * without that process, and standalone PostgreSQL never requests one on its own (only at
 * shutdown). Without checkpoints the WAL grows without bound (measured: 1.2 GB and 78 segment
 * files after 600,000 small inserts, none recycled), a crash replays all of it at the next start,
 * and every new segment file is created and filled on the request path.
 *
 * Here a timer looks at how much WAL was written since the last checkpoint and runs CHECKPOINT
 * when it is more than `walLimitBytes`, or when the last one is older than `maxAgeMs` and
 * anything was written since. A checkpoint stops the one thread for as long as it writes the
 * dirty pages and syncs them (about 0.2 s after 164 MB of WAL on the development machine), so
 * the limit is far below PostgreSQL's default max_wal_size (1 GB): short stops, often enough that
 * old segment files are recycled instead of new ones created.
 */

export interface CheckpointPolicy {
  /** WAL since the last checkpoint that calls for the next one. */
  walLimitBytes: number
  /** Age of the last checkpoint after which any new WAL calls for the next one. */
  maxAgeMs: number
  /** How often the WAL is looked at. */
  intervalMs: number
}

export const DEFAULT_CHECKPOINTS: CheckpointPolicy = {
  walLimitBytes: 64 * 1024 * 1024,
  // PostgreSQL's checkpoint_timeout default.
  maxAgeMs: 5 * 60_000,
  intervalMs: 10_000,
}

/** Autocommit statements on the embedded database. */
type Run = (sql: string) => Promise<{ rows: Record<string, unknown>[] }>

/**
 * Whether a checkpoint is due: `wal` bytes written since the last one's redo point, `ageMs` its
 * age, `written` whether anything was written since it (or since checking began). An idle
 * database is left alone: CHECKPOINT writes a record of its own, so "WAL since the last one" is
 * never zero after one.
 */
export function checkpointDue(
  policy: CheckpointPolicy,
  wal: number,
  ageMs: number,
  written: boolean,
) {
  return wal >= policy.walLimitBytes || (written && ageMs >= policy.maxAgeMs)
}

const SINCE_LAST = `SELECT pg_current_wal_insert_lsn()::text AS lsn,
  pg_wal_lsn_diff(pg_current_wal_insert_lsn(), redo_lsn)::float8 AS wal,
  (extract(epoch FROM now() - checkpoint_time) * 1000)::float8 AS age
  FROM pg_control_checkpoint()`

/**
 * Starts checking; the returned function stops it and waits for a check in progress. A failed
 * check or checkpoint is tried again at the next interval (a failed fsync has already stopped the
 * process: pglite-durable.ts).
 */
export function startCheckpoints(run: Run, policy: CheckpointPolicy = DEFAULT_CHECKPOINTS) {
  let busy: Promise<void> | undefined
  // The WAL position when checking began, or right after the last checkpoint run here.
  let quiet: string | undefined
  const check = async () => {
    const now = (await run(SINCE_LAST)).rows[0] as { lsn: string; wal: number; age: number }
    quiet ??= now.lsn
    if (!checkpointDue(policy, now.wal, now.age, now.lsn !== quiet)) return
    await run('CHECKPOINT')
    quiet = (await run('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0]!.lsn as string
  }
  const timer = setInterval(() => {
    busy ??= check()
      .catch(() => {})
      .finally(() => {
        busy = undefined
      })
  }, policy.intervalMs)
  timer.unref()
  return async () => {
    clearInterval(timer)
    await busy
  }
}
