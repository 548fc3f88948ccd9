import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { type Db, type MigrationSet, migrate, openDb } from '../../src/core/db/index.ts'
import { coreMigrations } from '../../src/core/migrations.ts'
import { copyPgliteTemplate } from './pglite-template.ts'

/** The real server when CI sets DFLARE_TEST_DATABASE_URL, else embedded PGlite. */
export const testDatabaseUrl = process.env.DFLARE_TEST_DATABASE_URL || undefined
export const testEngine = testDatabaseUrl ? 'postgres' : 'pglite'

export interface TestDatabase {
  db: Db
  /** Connection URL of the fresh database (PostgreSQL only). */
  url?: string
  close(): Promise<void>
}

/** Creates an empty database on the test server; `drop` removes it (forcing connections off). */
export async function createPostgresDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  if (!testDatabaseUrl) throw new Error('DFLARE_TEST_DATABASE_URL is not set')
  const name = `dflare_t_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: testDatabaseUrl })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  const url = new URL(testDatabaseUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: testDatabaseUrl })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await c.end()
    },
  }
}

/** A fresh, empty database per call: its own PostgreSQL database, or a new in-memory PGlite. */
export async function freshDatabase(): Promise<TestDatabase> {
  if (!testDatabaseUrl) {
    const dataDir = await mkdtemp(join(tmpdir(), 'dflare-pglite-'))
    await copyPgliteTemplate(dataDir)
    const db = await openDb({ kind: 'pglite', dataDir })
    return {
      db,
      async close() {
        await db.close()
        await rm(dataDir, { recursive: true, force: true })
      },
    }
  }
  const created = await createPostgresDatabase()
  const db = await openDb({ kind: 'postgres', url: created.url })
  return {
    db,
    url: created.url,
    async close() {
      // Tests that take the database away on purpose (outages) close it first: drop it anyway.
      try {
        await db.close()
      } finally {
        await created.drop()
      }
    },
  }
}

/** A fresh database with the given modules' migrations applied (core always first). */
export async function migratedDatabase(sets: readonly MigrationSet[] = []): Promise<TestDatabase> {
  const t = await freshDatabase()
  await migrate(t.db, [coreMigrations, ...sets])
  return t
}
