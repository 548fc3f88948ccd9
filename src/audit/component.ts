import { join } from 'node:path'
import type { AnyApiRoute } from '../gateway/route.ts'
import type { Component, Runtime } from '../server/component.ts'
import { auditApiRoutes } from './api.ts'
import { BackupService } from './backup.ts'
import { CheckpointService } from './checkpoints.ts'
import { KeyRing } from './keys.ts'
import { ProofService } from './proofs.ts'
import { loadOrCreateKeyFile, Pseudonymizer } from './pseudonym.ts'
import { QueryService } from './query.ts'
import { AuditSequencer } from './sequencer.ts'
import { AuditSink } from './sink.ts'

export interface Audit {
  component: Component
  /** The audit API as gateway routes: pass them to the gateway (`GatewayWiring.routes`). */
  apiRoutes: AnyApiRoute[]
  /** The EventSink every module records through (put it in Runtime.events). */
  sink: AuditSink
  /** Moves queued events into their Merkle logs; `drain()` before reading the log directly. */
  sequencer: AuditSequencer
  keys: KeyRing
  checkpoints: CheckpointService
  proofs: ProofService
  query: QueryService
  backup: BackupService
  pseudonymizer: Pseudonymizer
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

export async function createAudit(rt: Runtime): Promise<Audit> {
  const s = rt.config.audit
  const key = s.pseudonymKey ?? (await loadOrCreateKeyFile(join(s.keyDir, 'pseudonym.key')))
  const pseudonymizer = new Pseudonymizer(key, { pseudonymizeIps: s.pseudonymizeIps })
  const log = rt.log.child({ component: 'audit' })
  const sequencer = new AuditSequencer({
    db: rt.db,
    batch: s.maxBatch,
    delayMs: s.integrationDelay,
    pollMs: s.integrationPoll,
    onError: (err) => log.error({ err }, 'audit integration failed; events stay queued'),
    metrics: rt.metrics,
  })
  const drain = () => sequencer.drain()
  const sink = new AuditSink({
    db: rt.db,
    clock: rt.clock,
    pseudonymizer,
    maxBatch: s.maxBatch,
    onQueued: () => sequencer.kick(),
  })
  const keys = new KeyRing(rt.db, s.keyDir, s.origin)
  const checkpoints = new CheckpointService(rt.db, keys, s.origin, drain)
  const proofs = new ProofService(rt.db)
  const query = new QueryService(rt.db, pseudonymizer, drain)
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
    async start() {
      await keys.current() // create the first signing key before anything needs it
      sequencer.start()
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
      await sequencer.stop()
    },
  }
  const apiRoutes = auditApiRoutes({ query, proofs, checkpoints, keys })
  return {
    component,
    apiRoutes,
    sink,
    sequencer,
    keys,
    checkpoints,
    proofs,
    query,
    backup,
    pseudonymizer,
  }
}
