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
