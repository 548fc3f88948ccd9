import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PgliteDb } from '../../src/core/db/pglite.ts'

/** Runs `fn` with a new temporary directory, removed afterwards whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  try {
    return await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Runs `fn` with an embedded database on disk (its data directory `dir/data` of a new temporary
 * directory), closed and removed afterwards.
 */
export function withDiskDb<T>(
  prefix: string,
  options: Parameters<typeof PgliteDb.open>[1],
  fn: (db: PgliteDb, dataDir: string) => Promise<T>,
): Promise<T> {
  return withTempDir(prefix, async (dir) => {
    const dataDir = join(dir, 'data')
    const db = await PgliteDb.open(dataDir, options)
    try {
      return await fn(db, dataDir)
    } finally {
      await db.close()
    }
  })
}
