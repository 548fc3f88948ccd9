/**
 * Vacuum and analyze for the embedded database. On a PostgreSQL server the autovacuum launcher
 * does this; PGlite is one backend without it. Without vacuum, space freed by DELETE and UPDATE
 * is never reused (the free space map is only filled by VACUUM), so a table that takes and
 * removes rows grows for ever: the audit queue gains about a kilobyte per audited request and
 * never shrinks, and every scan of it walks the dead rows (measured: the queue's emptiness probe
 * 0.87 ms over 1,000 dead rows, 0.14 ms after VACUUM). Without analyze the planner never learns
 * the tables' sizes and distributions. And without freezing, transaction ids run out: after
 * about two billion transactions (weeks at a thousand a second) PostgreSQL refuses all writes.
 *
 * Here a timer reads the same statistics autovacuum reads and applies autovacuum's own rules,
 * with the database's own autovacuum settings (thresholds, scale factors, freeze age): a table
 * with enough dead rows, enough rows inserted since its last vacuum, or an old enough
 * relfrozenxid is vacuumed; one with enough rows changed since its last analyze is analyzed.
 * Tables are done one statement at a time, so requests interleave between them. Statistics reach
 * the views up to a second after a write (or at the next statement), so what a last burst before
 * a quiet spell left is seen at the next pass after it. Per-table storage parameters
 * (`autovacuum_*` reloptions) are not read.
 */

export interface VacuumPolicy {
  /** How often the statistics are looked at (autovacuum's naptime). */
  intervalMs: number
}

export const DEFAULT_VACUUM: VacuumPolicy = { intervalMs: 10_000 }

/** The database's autovacuum settings that decide when a table is due. */
export interface AutovacuumSettings {
  vacuumThreshold: number
  vacuumScaleFactor: number
  insertThreshold: number
  insertScaleFactor: number
  analyzeThreshold: number
  analyzeScaleFactor: number
  freezeMaxAge: number
}

/** What the statistics say of one table. */
export interface TableActivity {
  /** Schema-qualified, quoted as SQL needs it. */
  name: string
  /** Estimated rows (-1: never vacuumed nor analyzed). */
  reltuples: number
  deadRows: number
  insertedSinceVacuum: number
  changedSinceAnalyze: number
  /** Age of the table's relfrozenxid, in transactions. */
  xidAge: number
}

/** What a table needs: VACUUM, ANALYZE, both, or nothing (autovacuum's rules, PostgreSQL 15). */
export function maintenanceDue(
  s: AutovacuumSettings,
  t: TableActivity,
): { vacuum: boolean; analyze: boolean } {
  const rows = Math.max(t.reltuples, 0)
  return {
    vacuum:
      t.deadRows > s.vacuumThreshold + s.vacuumScaleFactor * rows ||
      (s.insertThreshold >= 0 &&
        t.insertedSinceVacuum > s.insertThreshold + s.insertScaleFactor * rows) ||
      t.xidAge > s.freezeMaxAge,
    analyze: t.changedSinceAnalyze > s.analyzeThreshold + s.analyzeScaleFactor * rows,
  }
}

/** The statement for what is due, or undefined. */
export function maintenanceStatement(
  name: string,
  due: { vacuum: boolean; analyze: boolean },
): string | undefined {
  if (due.vacuum) return due.analyze ? `VACUUM (ANALYZE) ${name}` : `VACUUM ${name}`
  return due.analyze ? `ANALYZE ${name}` : undefined
}

const SETTINGS = `SELECT
  current_setting('autovacuum_vacuum_threshold')::float8 AS "vacuumThreshold",
  current_setting('autovacuum_vacuum_scale_factor')::float8 AS "vacuumScaleFactor",
  current_setting('autovacuum_vacuum_insert_threshold')::float8 AS "insertThreshold",
  current_setting('autovacuum_vacuum_insert_scale_factor')::float8 AS "insertScaleFactor",
  current_setting('autovacuum_analyze_threshold')::float8 AS "analyzeThreshold",
  current_setting('autovacuum_analyze_scale_factor')::float8 AS "analyzeScaleFactor",
  current_setting('autovacuum_freeze_max_age')::float8 AS "freezeMaxAge"`

// Every permanent table, the system catalogs included (autovacuum does them too); a table's TOAST
// table is vacuumed with it.
const ACTIVITY = `SELECT format('%I.%I', s.schemaname, s.relname) AS name,
  c.reltuples::float8 AS reltuples,
  s.n_dead_tup::float8 AS "deadRows",
  s.n_ins_since_vacuum::float8 AS "insertedSinceVacuum",
  s.n_mod_since_analyze::float8 AS "changedSinceAnalyze",
  age(c.relfrozenxid)::float8 AS "xidAge"
  FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid
  WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p'
  ORDER BY 1`

/** Autocommit statements on the embedded database. */
type Run = (sql: string) => Promise<{ rows: Record<string, unknown>[] }>

/**
 * One look at the statistics: runs what is due, table by table, until `stopped` says so; returns
 * the statements run.
 */
export async function vacuumWhatIsDue(run: Run, stopped = () => false): Promise<string[]> {
  const settings = (await run(SETTINGS)).rows[0] as unknown as AutovacuumSettings
  const tables = (await run(ACTIVITY)).rows as unknown as TableActivity[]
  const done: string[] = []
  for (const t of tables) {
    if (stopped()) break
    const sql = maintenanceStatement(t.name, maintenanceDue(settings, t))
    if (!sql) continue
    await run(sql)
    done.push(sql)
  }
  return done
}

/**
 * Starts looking; the returned function stops it and waits for a pass in progress. A failed pass
 * is tried again at the next interval. `activity` counts what others have run on the database:
 * a pass runs only when it moved since the last one ended. A quiet database is not touched, and
 * must not be: statements less than a second apart leave statistics to report, for which
 * PostgreSQL arms a timer of about 10 s (its idle statistics report), a Node timer through
 * Emscripten that keeps the process alive; passes with nothing else going on re-armed it for ever
 * (test: idle-exit.ts).
 */
export function startVacuums(
  run: Run,
  activity: () => number,
  policy: VacuumPolicy = DEFAULT_VACUUM,
) {
  let busy: Promise<void> | undefined
  let stopped = false
  let seen = activity()
  const timer = setInterval(() => {
    if (busy || activity() === seen) return
    busy = vacuumWhatIsDue(run, () => stopped)
      .then(() => {})
      .catch(() => {})
      .finally(() => {
        seen = activity()
        busy = undefined
      })
  }, policy.intervalMs)
  timer.unref()
  return async () => {
    stopped = true
    clearInterval(timer)
    await busy
  }
}
