import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * A single-row read that rides along with the next transaction the current asynchronous context
 * begins: it runs right after BEGIN, in the same round trip, before anything the transaction
 * does. The gateway uses it to validate an optimistic request (core/revisions.ts) without a round
 * trip of its own.
 */
export interface Piggyback {
  /** One SELECT returning one row; plain text (no parameters), it runs as the connecting user. */
  readonly sql: string
  deliver(row: Record<string, unknown>): void
  fail(err: unknown): void
}

const slot = new AsyncLocalStorage<{ next?: Piggyback }>()

/** Gives the rest of the current asynchronous context a slot for piggybacked reads. */
export function enterPiggybackScope() {
  slot.enterWith({})
}

/** Offers `read` to the next transaction of this context (replacing one not yet taken). */
export function offerPiggyback(read: Piggyback): boolean {
  const s = slot.getStore()
  if (!s) return false
  s.next = read
  return true
}

/** For the database engines: the read to run first in the transaction being begun, once. */
export function takePiggyback(): Piggyback | undefined {
  const s = slot.getStore()
  const read = s?.next
  if (s) s.next = undefined
  return read
}

/** Takes back `read` if no transaction has taken it yet; true when it was still waiting. */
export function withdrawPiggyback(read: Piggyback): boolean {
  const s = slot.getStore()
  if (s?.next !== read) return false
  s.next = undefined
  return true
}
