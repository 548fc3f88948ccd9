import type { Logger } from 'pino'
import type { EventSink, SecurityEvent } from '../core/events.ts'

/**
 * Writes security events to the process log. Used only when a process runs without the audit
 * component (e.g. a gateway-only `dflare serve` before its audit client is configured).
 */
export class LogEventSink implements EventSink {
  readonly #log: Logger
  constructor(log: Logger) {
    this.#log = log.child({ stream: 'security-event' })
  }
  async record(event: SecurityEvent) {
    this.#log.info(
      { event: { ...event, time: (event.time ?? new Date()).toISOString() } },
      event.type,
    )
  }
}
