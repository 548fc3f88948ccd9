import type { Transaction } from '../core/db/index.ts'
import { type EventSink, markAuditFailure, type SecurityEvent } from '../core/events.ts'
import type { PeerClient } from '../pki/peer-client.ts'
import { toWire } from './internal.ts'
import { enqueue } from './sink.ts'

/**
 * The EventSink of a process without the audit component (`dflare serve`).
 *
 * - With a caller transaction, the audit host prepares the leaf (validation, minimization,
 *   keyed pseudonyms) and this process queues it in the caller's transaction on the shared
 *   database, so the state change and its event commit together or not at all (the audit host's
 *   sequencer integrates it into the log).
 * - Without one, the audit host records it and answers once it is durable.
 *
 * Any failure throws, so the caller fails the action (the gateway answers 503): fail closed.
 */
export class RemoteEventSink implements EventSink {
  readonly #client: PeerClient

  constructor(client: PeerClient) {
    this.#client = client
  }

  async record(event: SecurityEvent, tx?: Transaction): Promise<void> {
    const wire = { event: toWire(event) }
    if (tx) {
      const r = await this.#client.request('POST', '/internal/v1/audit/prepare', wire, {
        idempotent: true,
      })
      const prepared = r.body as { log?: unknown; body?: unknown }
      if (
        r.status !== 200 ||
        prepared?.log !== event.tenant ||
        typeof prepared.body !== 'string' ||
        prepared.body.length === 0
      )
        throw new Error(`the audit log refused the event: HTTP ${r.status}`)
      markAuditFailure(enqueue(tx, [{ log: prepared.log, body: prepared.body }]))
      return
    }
    // Not idempotent: a lost answer must not append the event twice, so no retry.
    const r = await this.#client.request('POST', '/internal/v1/audit/events', wire)
    if (r.status !== 200 || (r.body as { recorded?: unknown })?.recorded !== true)
      throw new Error(`the audit log refused the event: HTTP ${r.status}`)
  }

  close(): void {
    this.#client.close()
  }
}
