import { PgliteDb } from './pglite.ts'
import { PostgresDb } from './postgres.ts'
import type { Db } from './types.ts'

export type DbTarget = { kind: 'postgres'; url: string } | { kind: 'pglite'; dataDir?: string }

export async function openDb(target: DbTarget): Promise<Db> {
  if (target.kind === 'postgres') {
    const db = new PostgresDb({ url: target.url })
    await db.query('SELECT 1') // fail fast on a bad URL or an unreachable server
    return db
  }
  return PgliteDb.open(target.dataDir)
}
