import { resolve } from 'node:path'
import {
  defineSettings,
  parse,
  type ResolvedSoFar,
  SettingValueError,
} from '../core/config/index.ts'

const ORIGIN = /^[A-Za-z0-9.:_/-]{1,200}$/

export const auditSettings = defineSettings({
  origin: {
    env: 'DFLARE_AUDIT_ORIGIN',
    key: 'audit.origin',
    doc: 'Prefix of every checkpoint origin (a log is ORIGIN/{tenant}) and name of the checkpoint signing keys.',
    allowed: 'host/path characters, no spaces or "+"',
    default: (r: ResolvedSoFar) => {
      const u = r.publicUrl instanceof URL ? r.publicUrl : new URL('https://127.0.0.1:8443')
      return `${u.host}/audit`
    },
    defaultDoc: 'HOST[:PORT]/audit of the public URL',
    parse: (raw: unknown) => {
      const v = parse.string()(raw)
      if (!ORIGIN.test(v) || v.endsWith('/')) throw new SettingValueError('has the wrong form')
      return v
    },
  },
  keyDir: {
    env: 'DFLARE_AUDIT_KEY_DIR',
    key: 'audit.keyDir',
    doc: 'Directory (mode 0700) holding the checkpoint signing keys and the pseudonym key; never inside the database.',
    allowed: 'a directory path',
    default: (r: ResolvedSoFar) => resolve(String(r.home ?? '.dflare'), 'audit'),
    defaultDoc: '$DFLARE_HOME/audit',
    parse: parse.path(),
  },
  pseudonymKey: {
    env: 'DFLARE_AUDIT_PSEUDONYM_KEY',
    key: 'audit.pseudonymKey',
    doc: 'Base64 HMAC key (>= 32 bytes) for pseudonymising emails, IPs and token ids; when unset a random key is created in the key directory.',
    allowed: 'base64 of at least 32 bytes',
    default: undefined as Buffer | undefined,
    defaultDoc: '(generated in $DFLARE_HOME/audit/pseudonym.key)',
    secret: true,
    parse: (raw: unknown) => {
      const v = parse.optionalString()(raw)
      if (!v) return undefined
      const key = Buffer.from(v, 'base64')
      if (key.length < 32) throw new SettingValueError('is shorter than 32 bytes')
      return key
    },
  },
  pseudonymizeIps: {
    env: 'DFLARE_AUDIT_PSEUDONYMIZE_IPS',
    key: 'audit.pseudonymizeIps',
    doc: 'Store source IP addresses as keyed pseudonyms instead of in clear.',
    allowed: 'true or false',
    default: false,
    parse: parse.bool(),
  },
  checkpointInterval: {
    env: 'DFLARE_AUDIT_CHECKPOINT_INTERVAL',
    key: 'audit.checkpointInterval',
    doc: 'How often a signed checkpoint is issued for every log that grew.',
    allowed: 'duration 1s..1d (e.g. 60s)',
    default: 60_000,
    parse: parse.duration(1000, 86_400_000),
  },
  backupInterval: {
    env: 'DFLARE_AUDIT_BACKUP_INTERVAL',
    key: 'audit.backupInterval',
    doc: 'How often new events are sealed into segments (events + signed checkpoint) in the object store.',
    allowed: 'duration 1s..7d (e.g. 15m)',
    default: 900_000,
    parse: parse.duration(1000, 7 * 86_400_000),
  },
  retention: {
    env: 'DFLARE_AUDIT_RETENTION',
    key: 'audit.retention',
    doc: 'How long sealed segments are write-protected (S3 Object Lock COMPLIANCE retain-until, read-only files).',
    allowed: 'duration 1d..3650d (e.g. 2190d for six years)',
    default: 2190 * 86_400_000,
    defaultDoc: '2190d (six years, HIPAA)',
    parse: parse.duration(86_400_000, 3650 * 86_400_000),
  },
  integrationPoll: {
    env: 'DFLARE_AUDIT_INTEGRATION_POLL',
    key: 'audit.integrationPoll',
    doc: 'How often the audit host checks the queue for events queued by other processes (its own are integrated after DFLARE_AUDIT_INTEGRATION_DELAY).',
    allowed: 'duration 10ms..60s (e.g. 250ms)',
    default: 250,
    parse: parse.duration(10, 60_000),
  },
  integrationDelay: {
    env: 'DFLARE_AUDIT_INTEGRATION_DELAY',
    key: 'audit.integrationDelay',
    doc: 'How long the audit host waits after its own group commits before integrating the queued events into their logs, so that one transaction takes many. Readers never wait for it: queries, checkpoints and the CLI integrate what is queued first. Shorter on the embedded database, where an integration holds the one connection and every later commit waits for its WAL sync: smaller integrations keep both short.',
    allowed: 'duration 1ms..10s (e.g. 100ms)',
    // Measured on the gateway bench (2 and 4 connections): on PGlite, 25 ms brought the pipeline's
    // p99 from 8.0 / 11.1 to 5.2 / 7.6 ms (with overlapping WAL syncs, 100 and 250 ms gave more
    // throughput but a p99 of 12–19 ms at 4 connections); on PostgreSQL it cost more CPU per
    // request than it saved.
    default: (r: ResolvedSoFar) => (r['database.url'] ? 100 : 25),
    defaultDoc: '100ms on PostgreSQL, 25ms on the embedded PGlite',
    parse: parse.duration(1, 10_000),
  },
  maxBatch: {
    env: 'DFLARE_AUDIT_MAX_BATCH',
    key: 'audit.maxBatch',
    doc: 'Most events committed together by one group commit (events recorded outside a caller transaction), and most integrated into the logs by one transaction.',
    allowed: 'integer 1..10000',
    default: 1000,
    parse: parse.int(1, 10_000),
  },
})
