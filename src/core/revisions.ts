import { AsyncLocalStorage } from 'node:async_hooks'
import type { Db } from './db/index.ts'
import {
  enterPiggybackScope,
  offerPiggyback,
  type Piggyback,
  withdrawPiggyback,
} from './db/piggyback.ts'
import { FreshRead } from './fresh-read.ts'

/**
 * An optimistic request (optimistic concurrency control over the caches). Its checks use the
 * in-memory caches as they are, without first reading the database's revisions, and note the
 * revision each cache had applied (`assume`). Before anything leaves, `validate` compares those
 * with the database's current revisions — read in the same round trip as the BEGIN of the
 * request's first transaction when possible (piggyback), else on its own, or not read at all where
 * they are known (Revisions.known: the embedded database). Equal revisions mean
 * the caches held exactly the database's state at that moment, which is after the request
 * arrived: the checks were as fresh as the strict path's. Any difference (or any error) fails
 * validation, and the caller redoes every check strictly (`strict()`) before answering.
 */
export class OptimisticRequest {
  readonly #assumed = new Map<string, Set<number>>()
  #revisions: Revisions | undefined
  #active = true
  #offer: Piggyback | undefined
  #observed: Promise<Map<string, number>> | undefined

  get active() {
    return this.#active
  }

  /** From now on every check reads the database's revisions first (the strict path). */
  strict() {
    this.#active = false
  }

  assume(revisions: Revisions, name: string, applied: number) {
    this.#revisions = revisions
    let values = this.#assumed.get(name)
    if (!values) {
      values = new Set()
      this.#assumed.set(name, values)
    }
    values.add(applied)
  }

  /** Asks the next transaction of this request to read the revisions along with its BEGIN. */
  piggyback() {
    const revisions = this.#revisions
    // Nothing to read when the revisions are known (validate looks at them then).
    if (!revisions || this.#observed || revisions.known()) return
    let deliver!: (m: Map<string, number>) => void
    let fail!: (err: unknown) => void
    const observed = new Promise<Map<string, number>>((res, rej) => {
      deliver = res
      fail = rej
    })
    observed.catch(() => {})
    const offer: Piggyback = {
      sql: revisions.sql(),
      deliver: (row) => deliver(revisions.parse(row)),
      fail: (err) => fail(err),
    }
    if (offerPiggyback(offer)) {
      this.#offer = offer
      this.#observed = observed
    }
  }

  /**
   * True when every cache the request used held the revision the database holds now. Reads the
   * revisions itself unless a transaction of the request already did (piggyback).
   */
  async validate(): Promise<boolean> {
    const revisions = this.#revisions
    if (!revisions) return true // no cache was consulted
    // No transaction took the offer (the handler did not begin one): read now instead.
    if (this.#offer && withdrawPiggyback(this.#offer)) this.#observed = undefined
    this.#offer = undefined
    let current: ReadonlyMap<string, number>
    try {
      current = revisions.known() ?? (await (this.#observed ?? revisions.readNow()))
    } catch {
      return false
    }
    for (const [name, values] of this.#assumed)
      if (values.size !== 1 || !values.has(current.get(name) ?? Number.NaN)) return false
    return true
  }
}

const optimistic = new AsyncLocalStorage<OptimisticRequest>()

/** Serves the rest of the current asynchronous context optimistically (see OptimisticRequest). */
export function enterOptimistic(): OptimisticRequest {
  const request = new OptimisticRequest()
  optimistic.enterWith(request)
  enterPiggybackScope()
  return request
}

/** Where a module's revision is read, and where each change of it is announced. */
interface Source {
  /** One row with one integer column: the module's current revision. */
  sql: string
  /**
   * A NOTIFY channel on which a trigger on the revision's row announces every new value (the
   * payload is the revision), in the transaction that changes it.
   */
  channel: string
}

/**
 * The change revisions of the modules that keep in-memory state in step with the database (the
 * authz entity store, the IAM gateway state), read with one query and shared (FreshRead). Each
 * module registers the statement that reads its own revision; a request whose checks touch
 * several modules then pays one round trip for all of them, often none (a read started after it
 * arrived, for another request, serves it too).
 *
 * Where this process is the database's only writer and hears its own commits' notifications
 * before they return (`db.soleWriter`: the embedded PGlite), the revisions are not read at all
 * after the first time: each module's trigger announces every change, so the values heard are the
 * database's at every moment (`known`). Anything unexpected (a payload that is not a revision, a
 * lost listener, a failed start) falls back to reading.
 */
export class Revisions {
  readonly #db: Db
  readonly #sources = new Map<string, Source>()
  #sql: string | undefined
  readonly #fresh = new FreshRead(() => this.readNow())
  /** The revisions as announced, once heard from the start (sole writer only). */
  #heard: Map<string, number> | undefined
  #hearing: Promise<void> | undefined
  /** Bumped whenever what was heard stops counting: a start in flight then counts for nothing. */
  #generation = 0
  #unlisten: (() => Promise<void>)[] = []
  /**
   * Runs a function in the context this was created in (at start-up, by the caches): listening
   * begins when a request first asks, and must not run in that request's context (inside one of
   * its transactions, PGlite would refuse it).
   */
  readonly #detached = AsyncLocalStorage.snapshot()

  constructor(db: Db) {
    this.#db = db
  }

  register(name: string, sql: string, channel: string) {
    if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new Error(`invalid revision name ${name}`)
    if (sql.includes(';')) throw new Error('a revision source must be one statement')
    this.#sources.set(name, { sql, channel })
    this.#sql = undefined
    this.#stopHearing()
  }

  /**
   * The revisions the database holds at this moment, when they are known without reading
   * (see the class comment); undefined otherwise. Starts listening the first time it is asked.
   */
  known(): ReadonlyMap<string, number> | undefined {
    if (this.#heard) return this.#heard
    if (this.#db.soleWriter && !this.#hearing && this.#sources.size > 0)
      this.#detached(() => this.#startHearing())
    return undefined
  }

  /**
   * The module's revision, read no earlier than the caller may need (see FreshRead). In an
   * optimistic request, a cache passing what it has `applied` gets that back, noted for
   * validation (the request is then checked against the caller's own cache state).
   */
  async current(name: string, applied?: AppliedRevision): Promise<number> {
    const o = optimistic.getStore()
    if (o?.active && applied && this.#sources.has(name)) {
      o.assume(this, name, applied.value)
      return applied.value
    }
    const known = this.known()?.get(name)
    if (known !== undefined) return known
    let all = await this.#fresh.read()
    // Registered after that read started: read again, now.
    if (!all.has(name)) all = await this.#fresh.readNew()
    const revision = all.get(name)
    if (revision === undefined) throw new Error(`no revision source ${name}`)
    return revision
  }

  /** Every registered revision in one SELECT (no parameters, one row). */
  sql(): string {
    this.#sql ??= `SELECT ${[...this.#sources].map(([n, { sql }]) => `(${sql}) AS ${n}`).join(', ')}`
    return this.#sql
  }

  parse(row: Record<string, unknown> | undefined): Map<string, number> {
    return new Map([...this.#sources.keys()].map((n) => [n, Number(row?.[n] ?? 0)]))
  }

  /** The revisions read now, not shared (FreshRead shares it; optimistic validation does not). */
  async readNow(): Promise<Map<string, number>> {
    if (this.#sources.size === 0) return new Map()
    const { rows } = await this.#db.query(this.sql())
    return this.parse(rows[0])
  }

  /** Listens on every source's channel, then reads the revisions once: later changes are heard. */
  #startHearing() {
    const generation = this.#generation
    const current = () => generation === this.#generation
    const heard = new Map<string, number>()
    const hear = (name: string) => (payload: string) => {
      if (!current()) return
      const revision = /^\d{1,15}$/.test(payload) ? Number(payload) : Number.NaN
      // A lost listener, anything but a revision, or a revision that went back (revisions only
      // grow): what was heard no longer counts.
      if (!(revision >= (heard.get(name) ?? 0))) return this.#stopHearing()
      heard.set(name, revision)
    }
    this.#hearing = (async () => {
      for (const [name, { channel }] of this.#sources) {
        const unlisten = await this.#db.listen(channel, hear(name))
        if (!current()) return void unlisten().catch(() => {})
        this.#unlisten.push(unlisten)
      }
      const read = await this.readNow()
      if (!current()) return
      // The read may have waited (for its WAL sync) while later changes were heard: the larger.
      for (const [name, revision] of read)
        if (revision > (heard.get(name) ?? -1)) heard.set(name, revision)
      this.#heard = heard
    })().catch(() => {
      if (current()) this.#stopHearing()
    })
  }

  #stopHearing() {
    this.#generation++
    this.#heard = undefined
    this.#hearing = undefined
    for (const unlisten of this.#unlisten.splice(0)) unlisten().catch(() => {})
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
