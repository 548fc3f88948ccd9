import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import pino from 'pino'
import type { AuthorizationRequest, Decision, Pdp } from '../authz/contract.ts'
import { systemClock } from '../core/clock.ts'
import { ConfigError } from '../core/config/index.ts'
import { type Db, migrate, openDb } from '../core/db/index.ts'
import { Problem } from '../core/errors.ts'
import type { EventSink } from '../core/events.ts'
import { createLogger } from '../core/log.ts'
import { loadDflareConfig } from '../server/config.ts'
import { LogEventSink } from '../server/event-log-sink.ts'
import { allMigrations } from '../server/migrations.ts'
import { createDrivers } from './drivers/index.ts'
import { type Caller, IsolationService } from './service.ts'

/** The operator at this machine's shell: whoever can open the local database. */
export const LOCAL_OPERATOR: Caller = {
  principal: { type: 'Dflare::ServiceAccount', id: 'local-operator' },
  realm: 'platform',
  actor: { kind: 'system', id: 'cli:local-operator', realm: 'platform' },
}

/**
 * Used by the CLI until the composition root hands it the real PDP: it allows the isolation
 * actions to the local operator only (who already holds the database credentials, i.e. every
 * power the PDP could grant) and denies everything else.
 */
export const localOperatorPdp: Pdp = {
  async decide(r: AuthorizationRequest): Promise<Decision> {
    const ok =
      r.principal.type === LOCAL_OPERATOR.principal.type &&
      r.principal.id === LOCAL_OPERATOR.principal.id &&
      r.action.type === 'Dflare::Action' &&
      r.action.id.startsWith('tenantspec.')
    return {
      decision: ok ? 'allow' : 'deny',
      determining: ok ? ['local-operator'] : [],
      errors: [],
      reason: ok ? 'local operator' : 'only the local operator may use the CLI',
    }
  },
}

export interface LocalDeps {
  pdp?: Pdp
  events?: EventSink
  /** Layer 1 lookup; without one, verify reports the identity layer as unverifiable (fail closed). */
  realmExists?: (tenant: string) => Promise<boolean>
}

/** Opens the local home's database (migrating the isolation schema) and builds the service. */
export async function openLocalIsolation(
  deps: LocalDeps = {},
): Promise<{ service: IsolationService; db: Db }> {
  const { config } = loadDflareConfig()
  let db: Db
  if (config.core.databaseUrl)
    db = await openDb({ kind: 'postgres', url: config.core.databaseUrl.toString() })
  else {
    const dataDir = join(config.core.home, 'data')
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    db = await openDb({ kind: 'pglite', dataDir })
  }
  try {
    await migrate(db, allMigrations)
  } catch (err) {
    await db.close()
    throw err
  }
  const service = new IsolationService({
    db,
    clock: systemClock,
    // Until the audit component is wired here, events go to the JSON log on standard error.
    events:
      deps.events ??
      new LogEventSink(
        createLogger({ level: config.core.logLevel, name: 'dflare-cli' }, pino.destination(2)),
      ),
    pdp: deps.pdp ?? localOperatorPdp,
    realmExists:
      deps.realmExists ??
      (async () => {
        throw new Error('no realm lookup is wired into the CLI')
      }),
    drivers: createDrivers(config.isolation),
    config: config.isolation,
  })
  return { service, db }
}

/** Exit codes of the CLI contract: 2 for usage/configuration errors, 1 for anything else. */
export function reportError(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`error: ${err.message}\n`)
    return 2
  }
  if (err instanceof Problem) {
    process.stderr.write(`error: ${err.detail ?? err.title}\n`)
    for (const e of (err.extensions.errors as { field: string; message: string }[] | undefined) ??
      [])
      process.stderr.write(`  ${e.field}: ${e.message}\n`)
    return err.status === 400 || err.status === 404 ? 2 : 1
  }
  process.stderr.write(`error: ${(err as Error)?.message ?? String(err)}\n`)
  return 1
}
