/**
 * Shares one read among concurrent callers without ever serving a stale one: every caller gets
 * the result of a read that started after anything it could know of had happened. While a read
 * is in flight, new callers wait for the next read, which starts when the current one ends and
 * serves all of them. So at most two reads are outstanding whatever the number of callers, and a
 * caller that starts after a change committed always sees it (the read it gets started later).
 *
 * One refinement: a caller in the same synchronous run (up to the next microtask checkpoint) as
 * the start of a read joins that read. No I/O is processed in between, so nothing the caller can
 * know of (a request that arrived, a commit it was told about) is newer than that read.
 *
 * Used for the revision checks that make in-memory caches strongly consistent with the database.
 */
export class FreshRead<T> {
  readonly #read: () => Promise<T>
  #running: Promise<T> | undefined
  #queued: Promise<T> | undefined
  /** The read started in the current synchronous run, if any. */
  #joinable: Promise<T> | undefined

  constructor(read: () => Promise<T>) {
    this.#read = read
  }

  read(): Promise<T> {
    if (this.#joinable !== undefined) return this.#joinable
    const running = this.#running
    if (running === undefined) return this.#start()
    // The running read started before this call: it may predate a change we must see.
    this.#queued ??= running.then(
      () => this.#startQueued(),
      () => this.#startQueued(),
    )
    return this.#queued
  }

  #startQueued(): Promise<T> {
    this.#queued = undefined
    // A caller may already have started a read after the previous one ended; it started after
    // every queued caller called, so it serves them too.
    return this.#running ?? this.#start()
  }

  #start(): Promise<T> {
    const p = this.#read()
    this.#running = p
    this.#joinable = p
    queueMicrotask(() => {
      if (this.#joinable === p) this.#joinable = undefined
    })
    const done = () => {
      if (this.#running === p) this.#running = undefined
    }
    p.then(done, done)
    return p
  }
}
