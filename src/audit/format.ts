import type { StoredEvent } from './query.ts'

export const CSV_COLUMNS = [
  'log',
  'index',
  'time',
  'type',
  'tenant',
  'actor_kind',
  'actor_id',
  'actor_realm',
  'action',
  'resource_type',
  'resource_id',
  'outcome',
  'reason',
  'correlation_id',
  'source_ip',
  'user_agent',
  'details',
] as const

/** RFC 4180 quoting, plus a leading quote on cells a spreadsheet would run as a formula. */
function cell(v: unknown): string {
  if (v === undefined || v === null) return ''
  let s = typeof v === 'string' ? v : JSON.stringify(v)
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s
}

export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\r\n`
}

export function csvRow({ log, index, event: e }: StoredEvent): string {
  return `${[
    log,
    String(index),
    e.time,
    e.type,
    e.tenant,
    e.actor.kind,
    e.actor.id,
    e.actor.realm,
    e.action,
    e.resource?.type,
    e.resource?.id,
    e.outcome,
    e.reason,
    e.correlationId,
    e.sourceIp,
    e.userAgent,
    e.details,
  ]
    .map(cell)
    .join(',')}\r\n`
}

export function ndjsonRow(e: StoredEvent): string {
  return `${JSON.stringify(e)}\n`
}
