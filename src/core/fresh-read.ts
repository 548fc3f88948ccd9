import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * When the request being served arrived (`performance.now()`), for the code serving it. A
 * request cannot depend on anything that happened after it arrived, so for it any read that
 * started after its arrival is fresh (strict serialisability at the request's arrival). Code
 * outside a request gets `now`: only reads that start after it asks are fresh.
 */
const requestStart = new AsyncLocalStorage<number>()

/**
 * Marks the rest of the current asynchronous context as serving a request that arrived at `at`
 * (the gateway calls it first thing for every API request).
 */
export function enterRequest(at: number) {
  requestStart.enterWith(at)
}

/** The earliest start a read may have to be fresh for the current caller. */
function freshSince(): number {
  const start = requestStart.getStore()
  const now = performance.now()
  return start !== undefined && start <= now ? start : now
}

/**
 * Shares one read among concurrent callers without ever serving a stale one: every caller gets
 * the result of a read that started after anything it could know of had happened — after it
 * called, or after its request arrived (see enterRequest). A read in flight or just completed
 * that started late enough is shared; otherwise the caller waits for the next read, which starts
 * when the current one ends and serves every caller waiting. So at most two reads are
 * outstanding whatever the number of callers, and a caller that starts after a change committed
 * always sees it.
 *
 * One refinement: a caller in the same synchronous run (up to the next microtask checkpoint) as
 * the start of a read joins that read. No I/O is processed in between, so nothing the caller can
 * know of (a request that arrived, a commit it was told about) is newer than that read.
 *
 * Used for the revision checks that make in-memory caches strongly consistent with the database.
 */
export class FreshRead<T> {
  readonly #read: () => Promise<T>
  #running: { at: number; p: Promise<T> } | undefined
  #queued: Promise<T> | undefined
  /** The read started in the current synchronous run, if any. */
  #joinable: Promise<T> | undefined
  /** The latest read that succeeded, with when it started. */
  #last: { at: number; value: T } | undefined

  constructor(read: () => Promise<T>) {
    this.#read = read
  }

  read(): Promise<T> {
    if (this.#joinable !== undefined) return this.#joinable
    const since = freshSince()
    if (this.#last !== undefined && this.#last.at >= since) return Promise.resolve(this.#last.value)
    const running = this.#running
    if (running === undefined) return this.#start()
    if (running.at >= since) return running.p
    // The running read started before the caller's horizon: it may predate a change it must see.
    this.#queued ??= running.p.then(
      () => this.#startQueued(),
      () => this.#startQueued(),
    )
    return this.#queued
  }

  /** A read that starts now, whatever is in flight or cached (e.g. when a result lacks a part). */
  readNew(): Promise<T> {
    return this.#running === undefined ? this.#start() : this.#afterRunning()
  }

  #afterRunning(): Promise<T> {
    this.#queued ??= this.#running!.p.then(
      () => this.#startQueued(),
      () => this.#startQueued(),
    )
    return this.#queued
  }

  #startQueued(): Promise<T> {
    this.#queued = undefined
    // A caller may already have started a read after the previous one ended; it started after
    // every queued caller called, so it serves them too.
    return this.#running?.p ?? this.#start()
  }

  #start(): Promise<T> {
    const at = performance.now()
    const p = this.#read()
    const running = { at, p }
    this.#running = running
    this.#joinable = p
    queueMicrotask(() => {
      if (this.#joinable === p) this.#joinable = undefined
    })
    p.then(
      (value) => {
        if (this.#running === running) this.#running = undefined
        if (this.#last === undefined || at > this.#last.at) this.#last = { at, value }
      },
      () => {
        if (this.#running === running) this.#running = undefined
      },
    )
    return p
  }
}
