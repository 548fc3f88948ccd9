import { join } from 'node:path'
import type { Component, Runtime } from '../server/component.ts'
import { BackupService } from './backup.ts'
import { CheckpointService } from './checkpoints.ts'
import { KeyRing } from './keys.ts'
import { ProofService } from './proofs.ts'
import { loadOrCreateKeyFile, Pseudonymizer } from './pseudonym.ts'
import { QueryService } from './query.ts'
import { type AuditRouteDeps, auditRoutes } from './routes.ts'
import { AuditSink } from './sink.ts'

export interface Audit {
  component: Component
  /** The EventSink every module records through (put it in Runtime.events). */
  sink: AuditSink
  keys: KeyRing
  checkpoints: CheckpointService
  proofs: ProofService
  query: QueryService
  backup: BackupService
  pseudonymizer: Pseudonymizer
}

export interface AuditDeps {
  /** How the gateway exposes the authorized caller to the audit routes. */
  access?: AuditRouteDeps['access']
}

/** Runs `task` every `ms`, never overlapping itself; errors go to `onError`. */
function every(ms: number, task: () => Promise<unknown>, onError: (err: unknown) => void) {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    task()
      .catch(onError)
      .finally(() => {
        running = false
      })
  }, ms)
  timer.unref()
  return () => clearInterval(timer)
}

export async function createAudit(rt: Runtime, deps: AuditDeps = {}): Promise<Audit> {
  const s = rt.config.audit
  const key = s.pseudonymKey ?? (await loadOrCreateKeyFile(join(s.keyDir, 'pseudonym.key')))
  const pseudonymizer = new Pseudonymizer(key, { pseudonymizeIps: s.pseudonymizeIps })
  const sink = new AuditSink({ db: rt.db, clock: rt.clock, pseudonymizer, maxBatch: s.maxBatch })
  const keys = new KeyRing(rt.db, s.keyDir, s.origin)
  const checkpoints = new CheckpointService(rt.db, keys, s.origin)
  const proofs = new ProofService(rt.db)
  const query = new QueryService(rt.db, pseudonymizer)
  const backup = new BackupService({
    db: rt.db,
    objects: rt.objects,
    keys,
    checkpoints,
    retentionMs: s.retention,
    clock: rt.clock,
  })
  const stops: (() => void)[] = []
  const component: Component = {
    name: 'audit',
    routes: (app) =>
      auditRoutes(app, {
        sink,
        query,
        proofs,
        checkpoints,
        keys,
        ...(deps.access ? { access: deps.access } : {}),
      }),
    async start() {
      await keys.current() // create the first signing key before anything needs it
      const log = rt.log.child({ component: 'audit' })
      stops.push(
        every(
          s.checkpointInterval,
          () => checkpoints.issueForGrownLogs(),
          (err) => log.error({ err }, 'audit checkpoint run failed'),
        ),
        every(
          s.backupInterval,
          () => backup.seal(),
          (err) => log.error({ err }, 'audit backup run failed'),
        ),
      )
    },
    async stop() {
      for (const stop of stops.splice(0)) stop()
      await sink.close()
    },
  }
  return { component, sink, keys, checkpoints, proofs, query, backup, pseudonymizer }
}
