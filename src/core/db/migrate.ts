import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Db, Queryable } from './types.ts'

/**
 * Plain SQL migrations, one folder per module: `NNNN_name.sql`, applied in number order.
 * All pending migrations of all modules apply in one transaction under an advisory lock, so
 * two processes starting against the same PostgreSQL never apply one twice.
 */
export interface MigrationSet {
  /** Module name, e.g. `core`, `audit`; also the key in `core.migrations`. */
  module: string
  /** Absolute path of the folder holding the `.sql` files. */
  dir: string
}

export interface Migration {
  module: string
  version: number
  name: string
  sql: string
  checksum: string
}

const FILE = /^(\d{4})_([a-z0-9_]+)\.sql$/
// 'dflare' + 'migrate' as one bigint; any stable constant works.
const LOCK_KEY = 7_246_117_002_001

export class MigrationError extends Error {
  override name = 'MigrationError'
}

export async function loadMigrations(sets: readonly MigrationSet[]): Promise<Migration[]> {
  const all: Migration[] = []
  for (const set of sets) {
    const files = (await readdir(set.dir)).filter((f) => f.endsWith('.sql')).sort()
    let previous = 0
    for (const file of files) {
      const m = FILE.exec(file)
      if (!m) throw new MigrationError(`${set.module}: migration file ${file} is not NNNN_name.sql`)
      const version = Number(m[1])
      if (version !== previous + 1)
        throw new MigrationError(`${set.module}: migration ${file} breaks the numbering`)
      previous = version
      const sql = await readFile(join(set.dir, file), 'utf8')
      const checksum = createHash('sha256').update(sql).digest('hex')
      all.push({ module: set.module, version, name: m[2]!, sql, checksum })
    }
  }
  return all
}

const BOOTSTRAP = `
CREATE SCHEMA IF NOT EXISTS core;
CREATE TABLE IF NOT EXISTS core.migrations (
  module text NOT NULL,
  version integer NOT NULL,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (module, version)
);`

type Applied = { module: string; version: number; checksum: string }

async function applied(q: Queryable): Promise<Map<string, Applied>> {
  const exists = await q.query<{ t: string | null }>(
    "SELECT to_regclass('core.migrations')::text AS t",
  )
  if (!exists.rows[0]?.t) return new Map()
  const { rows } = await q.query<Applied>('SELECT module, version, checksum FROM core.migrations')
  return new Map(rows.map((r) => [`${r.module}/${r.version}`, r]))
}

function pendingOf(all: Migration[], done: Map<string, Applied>): Migration[] {
  const pending: Migration[] = []
  for (const m of all) {
    const row = done.get(`${m.module}/${m.version}`)
    if (!row) pending.push(m)
    else if (row.checksum !== m.checksum)
      throw new MigrationError(
        `${m.module}: migration ${m.version}_${m.name} was changed after it was applied`,
      )
  }
  return pending
}

/** Migrations not yet applied (used by readiness checks). */
export async function pendingMigrations(db: Db, sets: readonly MigrationSet[]) {
  return pendingOf(await loadMigrations(sets), await applied(db))
}

/** Applies every pending migration exactly once; returns the ones this call applied. */
export async function migrate(db: Db, sets: readonly MigrationSet[]): Promise<Migration[]> {
  const all = await loadMigrations(sets)
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY])
    await tx.exec(BOOTSTRAP)
    const pending = pendingOf(all, await applied(tx))
    for (const m of pending) {
      await tx.exec(m.sql)
      await tx.query(
        'INSERT INTO core.migrations (module, version, name, checksum) VALUES ($1, $2, $3, $4)',
        [m.module, m.version, m.name, m.checksum],
      )
    }
    return pending
  })
}
