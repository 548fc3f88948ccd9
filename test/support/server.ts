import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { createLogger } from '../../src/core/log.ts'
import { type ControlPlane, createControlPlane } from '../../src/server/compose.ts'
import { loadDflareConfig } from '../../src/server/config.ts'
import { allMigrations } from '../../src/server/migrations.ts'
import { createPostgresDatabase } from './db.ts'
import { copyPgliteTemplate } from './pglite-template.ts'

export interface TestServer {
  plane: ControlPlane
  url: URL
  home: string
  /** Every JSON log line the server wrote. */
  logs: Record<string, unknown>[]
  caPem: string
  close(): Promise<void>
}

/** A temporary DFLARE_HOME. */
export async function tempHome(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'dflare-test-'))
  return { path, remove: () => rm(path, { recursive: true, force: true }) }
}

/**
 * The real control plane, in process, on 127.0.0.1 port 0, with a temporary home; on the real
 * PostgreSQL (a fresh database) when DFLARE_TEST_DATABASE_URL is set, else embedded PGlite.
 */
export async function startTestServer(
  env: Record<string, string> = {},
  options: {
    routes?: (app: FastifyInstance) => void
    /** Called with the built plane just before it listens (to add a component, say). */
    beforeListen?: (plane: ControlPlane) => void
  } = {},
): Promise<TestServer> {
  const home = await tempHome()
  const database = process.env.DFLARE_TEST_DATABASE_URL ? await createPostgresDatabase() : undefined
  const dbEnv: Record<string, string> = database ? { DATABASE_URL: database.url } : {}
  if (!database) await copyPgliteTemplate(join(home.path, 'data'), allMigrations)
  const { config } = loadDflareConfig({
    env: { DFLARE_HOME: home.path, DFLARE_LISTEN: 'https://127.0.0.1:0', ...dbEnv, ...env },
    file: undefined,
  })
  const logs: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line))
      cb()
    },
  })
  const log = createLogger({ level: 'info' }, sink)
  const plane = await createControlPlane(config, log)
  options.routes?.(plane.app)
  options.beforeListen?.(plane)
  const url = await plane.listen()
  const caPem = await readFile(plane.caPath, 'utf8')
  return {
    plane,
    url,
    home: home.path,
    logs,
    caPem,
    async close() {
      await plane.close()
      await database?.drop()
      await home.remove()
    },
  }
}
