import pino, { type DestinationStream, type Logger } from 'pino'

/**
 * Keys whose values never reach the log in clear, at any depth of what a caller logs (request
 * headers, bodies, error objects, config dumps), as callers spell them; compared
 * case-insensitively.
 */
const SECRET_KEY_NAMES = [
  'password',
  'client_secret',
  'secret',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'authorization',
  'cookie',
  'set-cookie',
  'dpop',
  'otp',
  'databaseUrl',
]

/** SECRET_KEY_NAMES in lower case. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(
  SECRET_KEY_NAMES.map((k) => k.toLowerCase()),
)

export const CENSOR = '[REDACTED]'

/** Deeper than this, a logged value is dropped rather than searched. */
const MAX_DEPTH = 8

/** `code` is a secret at the top of a line (an OAuth code); deeper (`err.code`) it names an error. */
const isSecret = (key: string, depth: number) => {
  const k = key.toLowerCase()
  return SECRET_KEYS.has(k) || (depth === 0 && k === 'code')
}

/**
 * Searched: plain data (object literals, null-prototype records, serializers' output) and errors,
 * whose own fields are what JSON shows of them. Other objects (requests, dates, buffers) reach
 * the log through serializers or their own toJSON.
 */
function isSearchable(value: object): boolean {
  return (
    value.constructor === Object || Object.getPrototypeOf(value) === null || value instanceof Error
  )
}

/**
 * `value` with every secret key's value censored, searched through plain objects and arrays.
 * Copies only what it changes (the caller's objects are never modified) and returns `value`
 * itself when nothing is secret, so an ordinary log line allocates nothing here. An error with
 * a secret field becomes a plain copy of its own fields.
 */
export function redactSecrets<T>(value: T, depth = 0): T {
  if (value === null || typeof value !== 'object') return value
  if (depth > MAX_DEPTH) return '[TRUNCATED]' as T
  if (Array.isArray(value)) {
    let out: unknown[] | undefined
    for (let i = 0; i < value.length; i++) {
      const v = redactSecrets(value[i], depth + 1)
      if (v === value[i]) continue
      out ??= value.slice()
      out[i] = v
    }
    return (out ?? value) as T
  }
  if (!isSearchable(value)) return value
  let out: Record<string, unknown> | undefined
  const record = value as Record<string, unknown>
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue
    const v = record[key]
    // A line's `err` goes through safeError, which redacts what it keeps of it.
    if (depth === 0 && key === 'err' && v instanceof Error) continue
    const redacted = isSecret(key, depth)
      ? v === undefined
        ? v
        : CENSOR
      : redactSecrets(v, depth + 1)
    if (redacted === v) continue
    out ??= { ...record }
    out[key] = redacted
  }
  return (out ?? value) as T
}

/**
 * Errors keep their type, message, code and stack; database errors lose their bound parameters
 * and `detail` (which quotes row values, e.g. "Key (email)=(…) already exists").
 */
export function safeError(err: unknown): Record<string, unknown> {
  const out = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>
  for (const field of ['params', 'parameters', 'detail', 'where', 'internalQuery'])
    delete out[field]
  return redactSecrets(out, 1)
}

/**
 * pino's own `redact` covers what bypasses the log formatter: the top-level keys of child
 * bindings and the request/response serializers' output. It is kept to exact paths: a wildcard
 * path makes pino re-parse every path for every key of every line.
 */
const PINO_REDACT_PATHS = [
  ...SECRET_KEY_NAMES.filter((k) => !k.includes('-')),
  'code',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers.dpop',
  'res.headers["set-cookie"]',
]

export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      name: options.name ?? 'dflare',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: PINO_REDACT_PATHS, censor: CENSOR },
      formatters: {
        level: (label) => ({ level: label }),
        log: (object) => redactSecrets(object),
      },
      serializers: { err: safeError },
    },
    destination,
  )
}

export type { Logger }
