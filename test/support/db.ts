import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { type Db, type MigrationSet, migrate, openDb } from '../../src/core/db/index.ts'
import { coreMigrations } from '../../src/core/migrations.ts'

/** The real server when CI sets DFLARE_TEST_DATABASE_URL, else embedded PGlite. */
export const testDatabaseUrl = process.env.DFLARE_TEST_DATABASE_URL || undefined
export const testEngine = testDatabaseUrl ? 'postgres' : 'pglite'

export interface TestDatabase {
  db: Db
  /** Connection URL of the fresh database (PostgreSQL only). */
  url?: string
  close(): Promise<void>
}

/** A fresh, empty database per call: its own PostgreSQL database, or a new in-memory PGlite. */
export async function freshDatabase(): Promise<TestDatabase> {
  if (!testDatabaseUrl) {
    const db = await openDb({ kind: 'pglite' })
    return { db, close: () => db.close() }
  }
  const name = `dflare_t_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: testDatabaseUrl })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(testDatabaseUrl)
  url.pathname = `/${name}`
  const db = await openDb({ kind: 'postgres', url: url.toString() })
  return {
    db,
    url: url.toString(),
    async close() {
      await db.close()
      const c = new pg.Client({ connectionString: testDatabaseUrl })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await c.end()
    },
  }
}

/** A fresh database with the given modules' migrations applied (core always first). */
export async function migratedDatabase(sets: readonly MigrationSet[] = []): Promise<TestDatabase> {
  const t = await freshDatabase()
  await migrate(t.db, [coreMigrations, ...sets])
  return t
}
