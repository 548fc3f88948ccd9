import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { cp, readdir, readFile, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type MigrationSet, migrate } from '../../src/core/db/index.ts'
import { PgliteDb } from '../../src/core/db/pglite.ts'

/**
 * PGlite's initdb costs seconds; reopening an existing data directory costs about one. Tests
 * therefore copy a prepared data directory (cached in the temp dir, keyed by the migrations'
 * contents) instead of creating a database from scratch.
 */
async function keyOf(sets: readonly MigrationSet[]): Promise<string> {
  const h = createHash('sha256').update('pglite-template-v2')
  for (const set of sets) {
    h.update(`\0${set.module}`)
    for (const f of (await readdir(set.dir)).sort())
      h.update(f).update(await readFile(join(set.dir, f)))
  }
  return h.digest('hex').slice(0, 16)
}

const building = new Map<string, Promise<string>>()

async function template(sets: readonly MigrationSet[]): Promise<string> {
  const dir = join(tmpdir(), `dflare-pglite-${await keyOf(sets)}`)
  if (existsSync(join(dir, 'PG_VERSION'))) return dir
  let pending = building.get(dir)
  if (!pending) {
    pending = (async () => {
      const work = `${dir}.${randomBytes(4).toString('hex')}.tmp`
      const db = await PgliteDb.open(work)
      if (sets.length) await migrate(db, sets)
      // What the migrations left for vacuum and analyze is done here once, not by the timer in
      // every copy (pglite-vacuum.ts).
      await db.query('VACUUM (ANALYZE)')
      await db.close()
      // Another test process may have won the race; its copy is as good as ours.
      await rename(work, dir).catch(() => rm(work, { recursive: true, force: true }))
      return dir
    })()
    building.set(dir, pending)
  }
  return pending
}

/** Fills `target` with a PGlite data directory that has `sets` applied. */
export async function copyPgliteTemplate(target: string, sets: readonly MigrationSet[] = []) {
  await cp(await template(sets), target, { recursive: true })
}
