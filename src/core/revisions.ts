import type { Db } from './db/index.ts'
import { FreshRead } from './fresh-read.ts'

/**
 * The change revisions of the modules that keep in-memory state in step with the database (the
 * authz entity store, the IAM gateway state), read with one query and shared (FreshRead). Each
 * module registers the statement that reads its own revision; a request whose checks touch
 * several modules then pays one round trip for all of them, often none (a read started after it
 * arrived, for another request, serves it too).
 */
export class Revisions {
  readonly #db: Db
  readonly #sources = new Map<string, string>()
  readonly #fresh = new FreshRead(() => this.#readAll())

  constructor(db: Db) {
    this.#db = db
  }

  /** `sql` returns one row with one integer column: the module's current revision. */
  register(name: string, sql: string) {
    if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`invalid revision name ${name}`)
    this.#sources.set(name, sql)
  }

  /** The module's revision, read no earlier than the caller may need (see FreshRead). */
  async current(name: string): Promise<number> {
    let all = await this.#fresh.read()
    // Registered after that read started: read again, now.
    if (!all.has(name)) all = await this.#fresh.readNew()
    const revision = all.get(name)
    if (revision === undefined) throw new Error(`no revision source ${name}`)
    return revision
  }

  async #readAll(): Promise<Map<string, number>> {
    const names = [...this.#sources.keys()]
    if (names.length === 0) return new Map()
    const { rows } = await this.#db.query<Record<string, number | null>>(
      `SELECT ${names.map((n) => `(${this.#sources.get(n)}) AS ${n}`).join(', ')}`,
    )
    return new Map(names.map((n) => [n, Number(rows[0]?.[n] ?? 0)]))
  }
}

const perDb = new WeakMap<Db, Revisions>()

/** The one Revisions of a database handle. */
export function revisionsOf(db: Db): Revisions {
  let r = perDb.get(db)
  if (!r) {
    r = new Revisions(db)
    perDb.set(db, r)
  }
  return r
}

/**
 * The revision an in-memory cache has applied (from change notifications, or a fresh load), and
 * the callers waiting for it to reach the database's: the shared half of the strong-consistency
 * protocol of the authz entity store and the IAM gateway state.
 */
export class AppliedRevision {
  #value = 0
  #waiters: { revision: number; resolve: () => void }[] = []

  get value() {
    return this.#value
  }

  /** Changes up to `revision` are applied: releases every caller waiting for no more than that. */
  advance(revision: number) {
    if (revision > this.#value) this.#value = revision
    this.#waiters = this.#waiters.filter((w) => {
      if (w.revision > this.#value) return true
      w.resolve()
      return false
    })
  }

  /** Resolves true once `revision` is applied, false when `timeoutMs` passes first. */
  reached(revision: number, timeoutMs: number): Promise<boolean> {
    if (revision <= this.#value) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.#waiters.push({
        revision,
        resolve: () => {
          clearTimeout(timer)
          resolve(true)
        },
      })
    })
  }
}
