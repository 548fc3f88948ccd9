import fs from 'node:fs'

/**
 * The embedded database's WAL syncs, taken off the event loop and shared between commits.
 *
 * PGlite's PostgreSQL runs on this process's one thread, so its fsync at COMMIT (a synchronous
 * call into the host) stopped everything else for the length of a disk flush: measured at 2
 * connections on the gateway bench, 16 % of the thread's time. Here PostgreSQL's fsync of a WAL
 * file only notes the file; the sync itself runs on libuv's thread pool (`fs.fsync`), and every
 * caller of the database waits for it (`durable()`) before it hears of its transaction: a commit
 * is acknowledged only once its WAL is on disk, as before. A commit that ends while a sync runs
 * begins its own at once, up to MAX_SYNCS_IN_FLIGHT; past that, commits share the next one
 * (group commit).
 *
 * PostgreSQL, told its WAL is flushed, no longer orders its other writes after the flush itself,
 * so this does (the write-ahead rule): before anything else in the data directory changes — a
 * data page or control file written or synced, a file truncated, renamed or removed — the WAL
 * noted so far is synced, synchronously, right there. Those are checkpoints and evictions of dirty
 * pages, not the commit path. A WAL file that is closed is synced before it closes.
 */
/** Syncs of the WAL that may run at once (each one a thread of libuv's pool while it runs). */
export const MAX_SYNCS_IN_FLIGHT = 2

/** One sync of every WAL file with writes not yet known to be on disk. */
interface Round {
  /** WAL syncs PostgreSQL had asked for when it began: all on disk once it is done. */
  upTo: number
  fds: ReadonlySet<number>
  /** Of its fds, those closed while it ran (synced then): a failure on them means nothing. */
  closed: Set<number>
  done: Promise<void>
}

export class WalSync {
  /** WAL files (host fds) written since their last sync began. */
  readonly #pending = new Set<number>()
  readonly #rounds = new Set<Round>()
  /** WAL syncs PostgreSQL asked for so far, and how many of them are on disk. */
  #asked = 0
  #done = 0
  /** Callers of durable() and the number of syncs asked for that each waits for. */
  #waiters: { target: number; resolve: () => void }[] = []
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
    const target = this.#asked
    const p = new Promise<void>((resolve) => this.#waiters.push({ target, resolve }))
    this.#start()
    return p
  }

  /**
   * Begins a sync when a caller waits for writes that no sync in flight covers, and fewer than
   * MAX_SYNCS_IN_FLIGHT run: a commit that ends while another's sync runs need not wait for that
   * sync to end before its own begins (two overlapping fsyncs of a file end sooner than two in a
   * row). Past that limit, commits wait for a sync to end and share the next one (group commit).
   */
  #start() {
    if (this.#rounds.size >= MAX_SYNCS_IN_FLIGHT) return
    let covered = this.#done
    for (const r of this.#rounds) covered = Math.max(covered, r.upTo)
    if (!this.#waiters.some((w) => w.target > covered)) return
    // The files still being synced by an earlier round are synced again: this round alone then
    // covers every write made before it began, whichever round ends first.
    const fds = this.#unsynced()
    this.#pending.clear()
    const closed = new Set<number>()
    const round: Round = {
      upTo: this.#asked,
      fds,
      closed,
      done: Promise.all(
        [...fds].map(
          (fd) =>
            new Promise<void>((resolve) => {
              fs.fsync(fd, (err) => {
                if (err && !closed.has(fd)) this.#fatal(err)
                resolve()
              })
            }),
        ),
      ).then(() => {
        this.#rounds.delete(round)
        this.#advance(round.upTo)
        this.#start()
      }),
    }
    this.#rounds.add(round)
  }

  /**
   * The WAL files that may hold writes not yet on disk: those written since the last round began,
   * and those rounds in flight are syncing (a file closed meanwhile was synced as it closed, and
   * its fd may be gone or another file's by now).
   */
  #unsynced(): Set<number> {
    const fds = new Set(this.#pending)
    for (const r of this.#rounds) for (const fd of r.fds) if (!r.closed.has(fd)) fds.add(fd)
    return fds
  }

  /** Every WAL sync up to `done` is on disk: the callers waiting for no more hear so. */
  #advance(done: number) {
    this.#done = Math.max(this.#done, done)
    this.#waiters = this.#waiters.filter((w) => {
      if (w.target > this.#done) return true
      w.resolve()
      return false
    })
  }

  /** Before anything but a WAL write changes the data directory: the WAL first, synchronously. */
  flushNow() {
    if (this.settled) return
    const fds = this.#unsynced()
    try {
      for (const fd of fds) fs.fsyncSync(fd)
    } catch (err) {
      this.#fatal(err)
    }
    this.#pending.clear()
    this.#advance(this.#asked)
  }

  /** A WAL file is about to be closed: synced now if it has unsynced writes. */
  beforeClose(fd: number) {
    const pending = this.#pending.delete(fd)
    const syncing = [...this.#rounds].filter((r) => r.fds.has(fd))
    if (!pending && syncing.length === 0) return
    try {
      fs.fsyncSync(fd)
    } catch (err) {
      this.#fatal(err)
    }
    // A sync in flight may now find the fd closed, or reused: either way this file is synced.
    for (const r of syncing) r.closed.add(fd)
  }

  /** Resolves once no sync is in flight (before the data directory is unlocked). */
  async idle() {
    while (this.#rounds.size > 0) await Promise.all([...this.#rounds].map((r) => r.done))
  }
}
