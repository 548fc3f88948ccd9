/**
 * What the gateway asks IAM on every request — is this token or session revoked, does the realm
 * exist and is it enabled, what is its access-token lifetime — answered from memory, and never
 * staler than the database was when the question was asked:
 * - triggers bump `iam.state.revision` and NOTIFY `iam_gateway` in every transaction that changes
 *   a realm or records a revocation (migration 0002), so each process learns of every change;
 * - revocations (small, short-lived, only ever added) are all held in memory; realm rows are
 *   cached on first use and dropped when a notice names them;
 * - `sync()` reads the current revision (one single-row query, shared with concurrent callers
 *   and other modules' checks, but always one that started after the caller did or its request
 *   arrived: core/revisions.ts, core/fresh-read.ts) and, if a notice has not arrived yet, waits
 *   briefly for it, else drops what it cannot trust and reads the database until reloaded. So a
 *   request that arrives after a revocation committed, in this process or any other, is refused;
 * - when the listener connection is lost every answer comes from the database until listening
 *   again (fail closed, never stale).
 */
import { type Db, LISTENER_LOST } from '../core/db/index.ts'
import { AppliedRevision, revisionsOf } from '../core/revisions.ts'

export const GATEWAY_CHANNEL = 'iam_gateway'
const NOTIFY_WAIT_MS = 200
/** Past this many live revocations, answers come from the database (a memory bound). */
const MAX_REVOCATIONS = 1_000_000
const MAX_REALMS = 100_000
const PRUNE_EVERY_MS = 60_000
const REVISION_SQL = 'SELECT revision FROM iam.state WHERE singleton'
/** Where every change of that revision is announced (migration 0005). */
const REVISION_CHANNEL = 'iam_revision'

export interface RealmState {
  disabled: boolean
  /** The realm's access-token lifetime in seconds; null uses the process default. */
  accessTokenTtl: number | null
}

interface Notice {
  revision: number
  realm?: string
  sid?: string
  jti?: string
  /** Epoch seconds after which the revocation no longer matters. */
  expires?: number
}

const sessionKey = (realm: string, sid: string) => `${realm}\u0000${sid}`

export class GatewayState {
  readonly #db: Db
  /** LISTEN is active and the revocations are loaded: memory answers are complete. */
  #ready = false
  #stopped = true
  #unlisten: (() => Promise<void>) | undefined
  readonly #applied = new AppliedRevision()
  /** Bumped whenever realm rows may have changed: reads that raced with it are not cached. */
  #epoch = 0
  readonly #realms = new Map<string, RealmState | null>()
  /** jti → expiry (epoch seconds). */
  readonly #tokens = new Map<string, number>()
  /** realm\0sid → expiry (epoch seconds). */
  readonly #sessions = new Map<string, number>()
  #lastPrune = Date.now()

  constructor(db: Db) {
    this.#db = db
    revisionsOf(db).register('iam', REVISION_SQL, REVISION_CHANNEL)
  }

  /** Whether answers currently come from memory (tests, metrics). */
  get ready() {
    return this.#ready
  }

  async start(): Promise<void> {
    this.#stopped = false
    this.#unlisten = await this.#db.listen(GATEWAY_CHANNEL, (p) => this.#handle(p))
    await this.#load()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#ready = false
    const un = this.#unlisten
    this.#unlisten = undefined
    await un?.()
    this.#dropAll()
  }

  /**
   * Makes memory at least as new as the database was when this was called. Returns whether the
   * memory answers may be used; when false the caller must ask the database.
   */
  async sync(): Promise<boolean> {
    if (!this.#ready) return false
    const current = await revisionsOf(this.#db).current('iam', this.#applied)
    this.#prune()
    if (!(await this.#applied.reached(current, NOTIFY_WAIT_MS))) this.#reload()
    return this.#ready
  }

  /**
   * Whether the token (by jti) or its login session (by sid) is revoked, checked afresh: after
   * `synced` when given (a `sync()` the caller started when its check began), else a new sync.
   */
  async isRevoked(
    realm: string,
    jti: string,
    sid: string | undefined,
    synced: Promise<boolean> = this.sync(),
  ): Promise<'token' | 'session' | false> {
    if ((await synced) && this.#ready) {
      const now = Date.now() / 1000
      if ((this.#tokens.get(jti) ?? 0) > now) return 'token'
      if (sid !== undefined && (this.#sessions.get(sessionKey(realm, sid)) ?? 0) > now)
        return 'session'
      return false
    }
    if (await this.#tokenRevokedInDb(jti)) return 'token'
    if (sid !== undefined && (await this.#sessionRevokedInDb(realm, sid))) return 'session'
    return false
  }

  async isTokenRevoked(jti: string): Promise<boolean> {
    if (await this.sync()) return (this.#tokens.get(jti) ?? 0) > Date.now() / 1000
    return this.#tokenRevokedInDb(jti)
  }

  async isSessionRevoked(realm: string, sid: string): Promise<boolean> {
    if (await this.sync())
      return (this.#sessions.get(sessionKey(realm, sid)) ?? 0) > Date.now() / 1000
    return this.#sessionRevokedInDb(realm, sid)
  }

  /** The realm's row (undefined when there is none), checked afresh. */
  async realm(id: string): Promise<RealmState | undefined> {
    return this.#realm(id, await this.sync())
  }

  async #realm(id: string, useMemory: boolean): Promise<RealmState | undefined> {
    if (useMemory) {
      const cached = this.#realms.get(id)
      if (cached !== undefined) return cached ?? undefined
    }
    const epoch = this.#epoch
    const { rows } = await this.#db.query<{ disabled: boolean; ttl: number | null }>(
      'SELECT disabled, access_token_ttl AS ttl FROM iam.realms WHERE id = $1',
      [id],
    )
    const row = rows[0] ? { disabled: rows[0].disabled, accessTokenTtl: rows[0].ttl } : null
    if (useMemory && this.#ready && epoch === this.#epoch) {
      if (this.#realms.size >= MAX_REALMS) this.#realms.clear()
      this.#realms.set(id, row)
    }
    return row ?? undefined
  }

  async #readRevision(): Promise<number> {
    const { rows } = await this.#db.query<{ revision: number }>(REVISION_SQL)
    return rows[0]?.revision ?? 0
  }

  async #tokenRevokedInDb(jti: string): Promise<boolean> {
    const r = await this.#db.query(
      'SELECT 1 FROM iam.revoked_tokens WHERE jti = $1 AND expires_at > now()',
      [jti],
    )
    return r.rows.length > 0
  }

  async #sessionRevokedInDb(realm: string, sid: string): Promise<boolean> {
    const r = await this.#db.query(
      'SELECT 1 FROM iam.revoked_sessions WHERE realm = $1 AND sid = $2 AND expires_at > now()',
      [realm, sid],
    )
    return r.rows.length > 0
  }

  /**
   * Loads every live revocation. Runs after LISTEN, and reads the revision first: whatever
   * commits later arrives as a notice (merged, revocations are only ever added).
   */
  async #load(): Promise<void> {
    const revision = await this.#readRevision()
    const tokens = await this.#db.query<{ jti: string; expires: number }>(
      `SELECT jti, extract(epoch FROM expires_at)::float8 AS expires
         FROM iam.revoked_tokens WHERE expires_at > now() LIMIT ${MAX_REVOCATIONS + 1}`,
    )
    const sessions = await this.#db.query<{ realm: string; sid: string; expires: number }>(
      `SELECT realm, sid, extract(epoch FROM expires_at)::float8 AS expires
         FROM iam.revoked_sessions WHERE expires_at > now() LIMIT ${MAX_REVOCATIONS + 1}`,
    )
    if (this.#stopped || !this.#unlisten) return
    if (tokens.rows.length + sessions.rows.length > MAX_REVOCATIONS) return // database answers
    for (const t of tokens.rows) this.#addToken(t.jti, t.expires)
    for (const s of sessions.rows) this.#addSession(s.realm, s.sid, s.expires)
    this.#applied.advance(revision)
    this.#epoch++
    this.#realms.clear()
    this.#ready = true
  }

  /** Memory can no longer be trusted: answer from the database and load again. */
  #reload() {
    this.#ready = false
    this.#epoch++
    this.#realms.clear()
    if (this.#stopped || !this.#unlisten) return
    this.#load().catch(() => {
      if (!this.#stopped) setTimeout(() => this.#reload(), 1000).unref()
    })
  }

  #dropAll() {
    this.#epoch++
    this.#realms.clear()
    this.#tokens.clear()
    this.#sessions.clear()
  }

  #addToken(jti: string, expires: number) {
    if (expires > (this.#tokens.get(jti) ?? 0)) this.#tokens.set(jti, expires)
  }

  #addSession(realm: string, sid: string, expires: number) {
    const key = sessionKey(realm, sid)
    if (expires > (this.#sessions.get(key) ?? 0)) this.#sessions.set(key, expires)
  }

  #prune() {
    const now = Date.now()
    if (now - this.#lastPrune < PRUNE_EVERY_MS) return
    this.#lastPrune = now
    const seconds = now / 1000
    for (const [k, exp] of this.#tokens) if (exp <= seconds) this.#tokens.delete(k)
    for (const [k, exp] of this.#sessions) if (exp <= seconds) this.#sessions.delete(k)
  }

  #handle(payload: string) {
    if (payload === LISTENER_LOST) {
      this.#ready = false
      this.#unlisten = undefined
      this.#dropAll()
      if (!this.#stopped) setTimeout(() => this.#relisten(), 100).unref()
      return
    }
    let notice: Notice
    try {
      notice = JSON.parse(payload) as Notice
      if (typeof notice.revision !== 'number') throw new Error('no revision')
    } catch {
      this.#reload()
      return
    }
    if (notice.jti !== undefined) this.#addToken(String(notice.jti), Number(notice.expires))
    else if (notice.sid !== undefined && notice.realm !== undefined)
      this.#addSession(String(notice.realm), String(notice.sid), Number(notice.expires))
    else if (notice.realm !== undefined) {
      this.#epoch++
      this.#realms.delete(String(notice.realm))
    }
    if (this.#tokens.size + this.#sessions.size > MAX_REVOCATIONS) {
      this.#dropAll()
      this.#reload()
    }
    this.#applied.advance(notice.revision)
  }

  async #relisten() {
    if (this.#stopped || this.#unlisten) return
    try {
      await this.start()
    } catch {
      if (!this.#stopped) setTimeout(() => this.#relisten(), 1000).unref()
    }
  }
}
