import fs from 'node:fs'

/**
 * The embedded database's WAL syncs, taken off the event loop and shared between commits.
 *
 * PGlite's PostgreSQL runs on this process's one thread, so its fsync at COMMIT (a synchronous
 * call into the host) stopped everything else for the length of a disk flush: measured at 2
 * connections on the gateway bench, 16 % of the thread's time. Here PostgreSQL's fsync of a WAL
 * file only notes the file; the sync itself runs on libuv's thread pool (`fs.fsync`), and every
 * caller of the database waits for it (`durable()`) before it hears of its transaction: a commit
 * is acknowledged only once its WAL is on disk, as before, and commits that end while a sync is
 * under way share the next one (group commit).
 *
 * PostgreSQL, told its WAL is flushed, no longer orders its other writes after the flush itself,
 * so this does (the write-ahead rule): before anything else in the data directory changes — a
 * data page or control file written or synced, a file truncated, renamed or removed — the WAL
 * noted so far is synced, synchronously, right there. Those are checkpoints and evictions of dirty
 * pages, not the commit path. A WAL file that is closed is synced before it closes.
 */
export class WalSync {
  /** WAL files (host fds) written since their last sync began. */
  readonly #pending = new Set<number>()
  /** Fds the sync in flight is syncing (one sync at a time: `#round`). */
  readonly #inflight = new Set<number>()
  /** Of those, fds closed meanwhile (already synced then): a failure on them means nothing. */
  readonly #closed = new Set<number>()
  /** WAL syncs PostgreSQL asked for so far, and how many of them are on disk. */
  #asked = 0
  #done = 0
  #round: Promise<void> | undefined
  readonly #fatal: (err: unknown) => never

  /** `fatal` stops the process: after a failed sync nothing may be acknowledged. */
  constructor(fatal: (err: unknown) => never) {
    this.#fatal = fatal
  }

  /** PostgreSQL asked for the WAL file `fd` to be synced. */
  defer(fd: number) {
    this.#pending.add(fd)
    this.#asked++
  }

  /** True when every WAL sync asked for is on disk. */
  get settled(): boolean {
    return this.#done === this.#asked
  }

  /**
   * Resolves once every WAL sync asked for before the call is on disk; undefined when they all
   * are already (no promise, no wait).
   */
  durable(): Promise<void> | undefined {
    if (this.settled) return undefined
    return this.#until(this.#asked)
  }

  async #until(target: number) {
    while (this.#done < target) {
      this.#round ??= this.#sync().finally(() => {
        this.#round = undefined
      })
      await this.#round
    }
  }

  async #sync() {
    const upTo = this.#asked
    const fds = [...this.#pending]
    this.#pending.clear()
    for (const fd of fds) this.#inflight.add(fd)
    await Promise.all(
      fds.map(
        (fd) =>
          new Promise<void>((resolve) => {
            fs.fsync(fd, (err) => {
              this.#inflight.delete(fd)
              const closed = this.#closed.delete(fd)
              if (err && !closed) this.#fatal(err)
              resolve()
            })
          }),
      ),
    )
    this.#done = Math.max(this.#done, upTo)
  }

  /** Before anything but a WAL write changes the data directory: the WAL first, synchronously. */
  flushNow() {
    if (this.settled) return
    try {
      for (const fd of new Set([...this.#pending, ...this.#inflight])) fs.fsyncSync(fd)
    } catch (err) {
      this.#fatal(err)
    }
    this.#pending.clear()
    this.#done = this.#asked
  }

  /** A WAL file is about to be closed: synced now if it has unsynced writes. */
  beforeClose(fd: number) {
    const pending = this.#pending.delete(fd)
    const inflight = this.#inflight.has(fd)
    if (!pending && !inflight) return
    try {
      fs.fsyncSync(fd)
    } catch (err) {
      this.#fatal(err)
    }
    // The sync in flight may now find the fd closed, or reused: either way this file is synced.
    if (inflight) this.#closed.add(fd)
  }

  /** Resolves once no sync is in flight (before the data directory is unlocked). */
  async idle() {
    await this.#round
  }
}
