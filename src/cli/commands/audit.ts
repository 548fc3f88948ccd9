import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { type Command, InvalidArgumentError, Option } from 'commander'
import { CheckpointService } from '../../audit/checkpoints.ts'
import { exportBundle } from '../../audit/export.ts'
import { csvHeader, csvRow, ndjsonRow } from '../../audit/format.ts'
import { KeyRing } from '../../audit/keys.ts'
import { Pseudonymizer } from '../../audit/pseudonym.ts'
import { QueryService } from '../../audit/query.ts'
import { AuditSequencer } from '../../audit/sequencer.ts'
import { AuditSink } from '../../audit/sink.ts'
import {
  formatReport,
  parseKeys,
  readPseudonymKey,
  verifyDatabase,
  verifyFile,
  verifyObjectStore,
} from '../../audit/tools.ts'
import { systemClock } from '../../core/clock.ts'
import { type Db, openDb } from '../../core/db/index.ts'
import { openObjectStore } from '../../core/objects/index.ts'
import { loadDflareConfig } from '../../server/config.ts'
import { CliError, EXIT } from '../exit.ts'

const collect = (v: string, prev: string[] = []) => [...prev, v]
const date = (v: string) => {
  const d = new Date(v)
  if (Number.isNaN(d.getTime())) throw new InvalidArgumentError('not an ISO 8601 time')
  return d
}

async function openConfiguredDb(url: string | undefined) {
  const { config } = loadDflareConfig()
  const target = url ?? config.core.databaseUrl?.toString()
  const db = target
    ? await openDb({ kind: 'postgres', url: target })
    : await openDb({ kind: 'pglite', dataDir: join(config.core.home, 'data') })
  return { db, config }
}

/** Sets the exit status the action returns; errors go to main (CliError codes, usage = 2). */
async function run(action: () => Promise<number>) {
  process.exitCode = await action()
}

async function openStore(location: string) {
  try {
    return await openObjectStore(location)
  } catch (err) {
    if ((err as Error).name === 'ObjectStoreConfigError')
      throw new CliError(`--store: ${(err as Error).message}`, EXIT.usage)
    throw err
  }
}

/** Records that an operator read the audit log from the command line (in the platform log). */
async function recordCliRead(
  db: Db,
  keyDir: string,
  action: string,
  details: Record<string, unknown>,
) {
  const key = (await readPseudonymKey(keyDir)) ?? randomBytes(32)
  const sink = new AuditSink({
    db,
    clock: systemClock,
    pseudonymizer: new Pseudonymizer(key, { pseudonymizeIps: false }),
    maxBatch: 1,
  })
  await sink.record({
    type: 'audit.read',
    tenant: 'platform',
    actor: { kind: 'system', id: `cli:${userInfo().username}` },
    action,
    resource: { type: 'audit_log', id: '*' },
    outcome: 'success',
    details,
  })
  // Integrate what is queued (this event included), so that what the command reads is current.
  await new AuditSequencer({
    db,
    batch: 1000,
    delayMs: 0,
    pollMs: 0,
    onError: () => {},
  }).drain()
}

export function registerAudit(program: Command) {
  const audit = program
    .command('audit')
    .description('Tamper-evident audit log: verify, query, export')

  audit
    .command('verify')
    .description(
      'Recompute the Merkle trees and check stored hashes and signed checkpoints; exit 1 naming the first bad index',
    )
    .option('--database <url>', 'PostgreSQL URL (default: the configured database)')
    .option('--file <path>', 'verify an export file (- for standard input) instead of the database')
    .option(
      '--store <location>',
      'verify the object-storage backup alone (a directory or s3://bucket/prefix?…)',
    )
    .option('--log <name>', 'only this log (repeatable)', collect)
    .option('--key <vkey>', 'trusted checkpoint verifier key name+id+key (repeatable)', collect)
    .option(
      '--trust-database-keys',
      "trust the database's own key list instead of this host's signing keys",
    )
    .option('--json', 'print the report as JSON')
    .action((o) =>
      run(async () => {
        const sources = [o.file, o.store, o.database].filter((v) => v !== undefined)
        if (sources.length > 1)
          throw new CliError('choose one of --database, --file, --store', EXIT.usage)
        let keys: ReturnType<typeof parseKeys> | undefined
        try {
          keys = o.key ? parseKeys(o.key) : undefined
        } catch (err) {
          throw new CliError(`--key: ${(err as Error).message}`, EXIT.usage)
        }
        const options = { ...(o.log ? { logs: o.log } : {}), ...(keys ? { keys } : {}) }
        let report: Awaited<ReturnType<typeof verifyDatabase>>
        if (o.file) report = await verifyFile(o.file, options)
        else if (o.store) report = await verifyObjectStore(await openStore(o.store), options)
        else {
          const { db, config } = await openConfiguredDb(o.database)
          try {
            // Without --key, trust the keys whose private halves this host holds: an owner of
            // the database could add a key of their own to audit.keys and re-sign a rewrite.
            const local = keys
              ? []
              : await new KeyRing(db, config.audit.keyDir, config.audit.origin).localVerifierKeys()
            report = await verifyDatabase(
              db,
              local.length > 0 && !o.trustDatabaseKeys
                ? { ...options, keys: local, trust: 'local' }
                : options,
            )
          } finally {
            await db.close()
          }
        }
        process.stdout.write(o.json ? `${JSON.stringify(report)}\n` : formatReport(report))
        // An export or backup holding no log at all is not evidence of anything.
        const empty = report.logs.length === 0 && report.source !== 'database'
        return report.ok && !empty ? EXIT.ok : EXIT.failure
      }),
    )

  audit
    .command('query')
    .description('List events with filters and cursor pagination')
    .option('--database <url>', 'PostgreSQL URL (default: the configured database)')
    .option('--log <name>', 'only this log')
    .option('--correlation-id <id>', 'events of one request')
    .option('--actor <id>', 'actor id (emails are matched by their pseudonym)')
    .option('--action <action>', 'e.g. api:CreateProject or login')
    .addOption(new Option('--outcome <outcome>').choices(['success', 'failure', 'denied', 'error']))
    .option('--type <type>', 'event type, e.g. auth.login')
    .option('--since <time>', 'from this time (inclusive, ISO 8601)', date)
    .option('--until <time>', 'up to this time (exclusive, ISO 8601)', date)
    .option('--cursor <cursor>', 'continue after a previous page')
    .option('--limit <n>', 'events per page (1..1000)', (v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 1 || n > 1000) throw new InvalidArgumentError('1..1000')
      return n
    })
    .addOption(
      new Option('--format <format>', 'all pages as ndjson or csv').choices(['ndjson', 'csv']),
    )
    .option('--json', 'print one page as JSON with its next cursor')
    .action((o) =>
      run(async () => {
        const { db, config } = await openConfiguredDb(o.database)
        try {
          const key = config.audit.pseudonymKey ?? (await readPseudonymKey(config.audit.keyDir))
          const query = new QueryService(
            db,
            new Pseudonymizer(key ?? randomBytes(32), { pseudonymizeIps: false }),
          )
          const filter = {
            allowed: 'all' as const,
            log: o.log,
            correlationId: o.correlationId,
            actor: o.actor,
            action: o.action,
            outcome: o.outcome,
            type: o.type,
            since: o.since,
            until: o.until,
          }
          await recordCliRead(db, config.audit.keyDir, 'audit:QueryEvents', {
            filter: Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined)),
          })
          if (o.format) {
            if (o.format === 'csv') process.stdout.write(csvHeader())
            for await (const e of query.all(filter))
              process.stdout.write(o.format === 'csv' ? csvRow(e) : ndjsonRow(e))
            return 0
          }
          const page = await query.events({ ...filter, cursor: o.cursor, limit: o.limit ?? 100 })
          if (o.json) process.stdout.write(`${JSON.stringify(page)}\n`)
          else {
            for (const { log, index, event: e } of page.events)
              process.stdout.write(
                `${e.time} ${log}#${index} ${e.type} ${e.actor.kind}:${e.actor.id} ${e.action} ${e.outcome}${e.reason ? ` (${e.reason})` : ''}${e.correlationId ? ` cid=${e.correlationId}` : ''}\n`,
              )
            if (page.nextCursor) process.stdout.write(`next: --cursor ${page.nextCursor}\n`)
          }
          return 0
        } finally {
          await db.close()
        }
      }),
    )

  audit
    .command('export')
    .description('Write a self-verifying export (events + signed checkpoints + keys) as NDJSON')
    .requiredOption('--out <path>', 'file to write (- for standard output)')
    .option('--database <url>', 'PostgreSQL URL (default: the configured database)')
    .option('--log <name>', 'only this log (repeatable)', collect)
    .action((o) =>
      run(async () => {
        const { db, config } = await openConfiguredDb(o.database)
        try {
          const keys = new KeyRing(db, config.audit.keyDir, config.audit.origin)
          const checkpoints = new CheckpointService(db, keys, config.audit.origin)
          await recordCliRead(db, config.audit.keyDir, 'audit:ExportEvents', { logs: o.log ?? '*' })
          const out = o.out === '-' ? process.stdout : createWriteStream(o.out, { flags: 'wx' })
          for await (const line of exportBundle(db, keys, checkpoints, o.log))
            if (!out.write(`${line}\n`)) await once(out, 'drain')
          if (out !== process.stdout) {
            out.end()
            await once(out, 'finish')
          }
          return 0
        } finally {
          await db.close()
        }
      }),
    )
}
