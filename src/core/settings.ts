import { resolve } from 'node:path'
import { defineSettings, parse, type ResolvedSoFar, SettingValueError } from './config/index.ts'
import { parseS3Url } from './objects/s3.ts'

export const coreSettings = defineSettings({
  home: {
    env: 'DFLARE_HOME',
    key: 'home',
    doc: 'Directory for all local state: embedded database, internal CA, object store, bootstrap.json.',
    allowed: 'a directory path',
    default: resolve('.dflare'),
    defaultDoc: './.dflare',
    parse: parse.path(),
  },
  databaseUrl: {
    env: 'DATABASE_URL',
    key: 'database.url',
    doc: 'PostgreSQL connection URL; when unset the embedded PGlite database under $DFLARE_HOME/data is used.',
    allowed: 'postgres://USER@HOST:PORT/DB or postgresql://…',
    default: undefined as URL | undefined,
    defaultDoc: '(embedded PGlite)',
    parse: parse.optionalUrl(['postgres:', 'postgresql:']),
    secret: true,
  },
  objectStore: {
    env: 'DFLARE_OBJECT_STORE',
    key: 'objectStore',
    doc: 'Where backups and exports go: a directory, or any S3 API as s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=true.',
    allowed: 'a directory path or an s3:// URL',
    default: (r: ResolvedSoFar) => resolve(String(r.home), 'objects'),
    defaultDoc: '$DFLARE_HOME/objects',
    parse: (raw: unknown) => {
      const value = String(raw).trim()
      if (!/^s3:/i.test(value)) return parse.path()(raw)
      try {
        parseS3Url(value) // validated now, so a bad URL stops start-up; kept verbatim
      } catch (err) {
        throw new SettingValueError((err as Error).message.replace(/^DFLARE_OBJECT_STORE: /, ''))
      }
      return value
    },
  },
  logLevel: {
    env: 'DFLARE_LOG_LEVEL',
    key: 'log.level',
    doc: 'Minimum level of the JSON log written to standard output.',
    allowed: 'fatal, error, warn, info, debug, trace, silent',
    default: 'info' as const,
    parse: parse.oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
  },
})
