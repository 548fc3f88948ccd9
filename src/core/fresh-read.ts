/**
 * Shares one read among concurrent callers without ever serving a stale one: every caller gets
 * the result of a read that *started after it called*. While a read is in flight, new callers
 * wait for the next read, which starts when the current one ends and serves all of them. So at
 * most two reads are outstanding whatever the number of callers, and a caller that starts after
 * a change committed always sees it (the read it gets started later still).
 *
 * Used for the revision checks that make in-memory caches strongly consistent with the database.
 */
export class FreshRead<T> {
  readonly #read: () => Promise<T>
  #running: Promise<T> | undefined
  #queued: Promise<T> | undefined

  constructor(read: () => Promise<T>) {
    this.#read = read
  }

  read(): Promise<T> {
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
    const done = () => {
      if (this.#running === p) this.#running = undefined
    }
    p.then(done, done)
    return p
  }
}
