import pino, { type DestinationStream, type Logger } from 'pino'

/**
 * Paths redacted from every log line. Values under these keys never reach the log in clear,
 * wherever a caller puts them (request headers, bodies, error objects, config dumps).
 */
export const REDACTED_PATHS = [
  'password',
  'client_secret',
  'secret',
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'authorization',
  'cookie',
  'code',
  'otp',
  'databaseUrl',
  '*.password',
  '*.client_secret',
  '*.secret',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.authorization',
  '*.cookie',
  '*.otp',
  '*.databaseUrl',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["set-cookie"]',
  '*.headers["dpop"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
]

/**
 * Errors keep their type, message, code and stack; database errors lose their bound parameters
 * and `detail` (which quotes row values, e.g. "Key (email)=(…) already exists").
 */
export function safeError(err: unknown): Record<string, unknown> {
  const out = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>
  for (const field of ['params', 'parameters', 'detail', 'where', 'internalQuery'])
    delete out[field]
  return out
}

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
      redact: { paths: REDACTED_PATHS, censor: '[REDACTED]' },
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: safeError },
    },
    destination,
  )
}

export type { Logger }
