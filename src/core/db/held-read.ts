import { AsyncLocalStorage } from 'node:async_hooks'
import { randomBytes } from 'node:crypto'
import type { Transaction } from './types.ts'

/**
 * Held reads: a request's read-only transaction whose COMMIT waits for the request's audit event,
 * so that the read and the durable record of it cost one transaction and one commit, and the
 * record no round trip of its own. The gateway holds the first read of every read route.
 *
 * The engines begin a held read read-write and run the caller's work in a read-only section: a
 * savepoint with an unguessable name, then `SET TRANSACTION READ ONLY`, the role and the settings,
 * all local to the savepoint. The caller's statements can neither write nor leave the section
 * (that takes the savepoint's name). When the caller's function returns, its result is handed
 * over and the transaction stays open until the holder
 * - commits it with a write (`commitWith`): `ROLLBACK TO SAVEPOINT` ends the section (role,
 *   settings and read-only mode go with it; the read wrote nothing), the write's statements run
 *   as the connecting user, and COMMIT goes out right behind them; or
 * - releases it (`release`): the transaction is rolled back, nothing was written.
 *
 * Only the first transaction of the context is held, and only when read-only. Any later use of
 * the database in the same context releases it first, so a request never has two connections.
 * A held read still open after HOLD_LIMIT_MS is released: a holder waiting for anything else
 * never blocks the database.
 *
 * Only the server engine holds reads (`db.holdsReads`; the gateway asks for no hold elsewhere).
 * The embedded one (pglite.ts) never does, and `commitWith` would answer false: its one
 * connection, held, would keep every other transaction waiting while the holder works, and it
 * has no round trip to save (measured on the gateway bench at 2 connections: 0.46 of bare's
 * throughput with held reads, 0.49 with the events group-committed).
 */
export const HOLD_LIMIT_MS = 50

/** How an engine ends a held transaction: `write` then COMMIT, or (no write) ROLLBACK. */
export type EndHeld = (write: ((tx: Transaction) => Promise<void>) | undefined) => Promise<void>

/** A held read as the engines hand it over: ended once, by the holder, a later use or the limit. */
export class HeldRead {
  readonly #end: EndHeld
  #ended: Promise<void> | undefined
  readonly #limit: NodeJS.Timeout

  constructor(end: EndHeld) {
    this.#end = end
    // Not unref'd: whoever waits for the held transaction to end (a database closing) is sure to
    // see it end, even if nothing else keeps the process alive.
    this.#limit = setTimeout(() => void this.release(), HOLD_LIMIT_MS)
  }

  /**
   * Ends the read-only section, runs `write` in the same transaction and commits. False (nothing
   * done) when the read was already released; rejects, with nothing committed, when any of it
   * fails.
   */
  async commitWith(write: (tx: Transaction) => Promise<void>): Promise<boolean> {
    if (this.#ended) return false
    clearTimeout(this.#limit)
    this.#ended = this.#end(write)
    await this.#ended
    return true
  }

  /** Rolls the read back (it wrote nothing); never rejects. */
  release(): Promise<void> {
    if (!this.#ended) {
      clearTimeout(this.#limit)
      this.#ended = this.#end(undefined).catch(() => {})
    }
    return this.#ended.catch(() => {})
  }
}

/**
 * Savepoint names: a secret of this process, so that no statement of the caller can name the
 * savepoint (to leave the read-only section), and a counter. Cheaper than random bytes per read.
 */
const SECTION_KEY = randomBytes(12).toString('hex')
let sections = 0

interface Slot {
  claimed: boolean
  held?: HeldRead
}

const slot = new AsyncLocalStorage<Slot>()

/** The holder's side: what the gateway keeps for one request. */
export interface ReadHold {
  /** See HeldRead.commitWith; false when no read is held (none ran, or it was released). */
  commitWith(write: (tx: Transaction) => Promise<void>): Promise<boolean>
  /** Releases the held read, if any (before anything else waits on the database). */
  release(): Promise<void>
}

/** Holds the next read-only transaction begun in the rest of the current asynchronous context. */
export function holdNextRead(): ReadHold {
  const s: Slot = { claimed: false }
  slot.enterWith(s)
  return {
    commitWith: (write) => {
      const held = s.held
      s.held = undefined
      return held ? held.commitWith(write) : Promise.resolve(false)
    },
    release: () => {
      const held = s.held
      s.held = undefined
      return held ? held.release() : Promise.resolve()
    },
  }
}

/**
 * For the engines, when beginning a transaction: when it is the first of a context that holds its
 * read, and read-only, the savepoint name of its read-only section and where to hand it over.
 */
export function claimHold(
  readOnly: boolean | undefined,
): { section: string; park(held: HeldRead): void } | undefined {
  const s = slot.getStore()
  if (!s || s.claimed) return undefined
  s.claimed = true
  if (!readOnly) return undefined
  return {
    section: `dflare_read_${SECTION_KEY}_${(sections++).toString(36)}`,
    park: (held) => {
      s.held = held
    },
  }
}

/**
 * For the engines, before any use of the database: releases a read this context holds (undefined
 * when it holds none, the usual case, so that nothing waits).
 */
export function releaseHeldRead(): Promise<void> | undefined {
  const s = slot.getStore()
  const held = s?.held
  if (!held) return undefined
  s.held = undefined
  return held.release()
}
