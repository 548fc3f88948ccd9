import type { Logger } from 'pino'
import type { Db } from '../core/db/index.ts'
import type { EventSink } from '../core/events.ts'
import { BACKCHANNEL_CHANNEL } from './adapter.ts'
import type { CaFetch } from './https-fetch.ts'

/** Thrown by the provider's outbound fetch for any destination a client did not register. */
export class OutboundRefused extends Error {
  constructor(origin: string) {
    super(`outbound request to ${origin} refused: not a registered back-channel logout URI`)
    this.name = 'OutboundRefused'
  }
}

/** The registered back-channel logout URIs of a realm's clients, normalised. */
async function registeredLogoutUris(db: Db, realm: string): Promise<Set<string>> {
  const { rows } = await db.query<{ uri: string }>(
    `SELECT metadata->>'backchannel_logout_uri' AS uri FROM iam.clients
     WHERE realm = $1 AND metadata->>'backchannel_logout_uri' IS NOT NULL`,
    [realm],
  )
  const out = new Set<string>()
  for (const r of rows) {
    const u = URL.parse(r.uri)
    if (u?.protocol === 'https:') out.add(u.href)
  }
  return out
}

/**
 * oidc-provider's outbound HTTP for one realm (its `fetch` setting). The OP calls out only to
 * deliver back-channel logout tokens, so exactly the back-channel logout URIs registered by the
 * realm's clients are reachable: any other URL (a client jwks_uri, sector identifier, request_uri
 * or a redirect target) is refused before a connection is made. TLS trusts the system roots and
 * the internal CA (`transport`); redirects are not followed. Registered URIs may name internal
 * hosts: they are set by administrators, never by the client or the user.
 */
export function providerFetch(db: Db, realm: string, transport: CaFetch) {
  return async (url: string | URL, init: RequestInit & { dispatcher?: unknown } = {}) => {
    const target = new URL(String(url))
    if (target.protocol !== 'https:' || !(await registeredLogoutUris(db, realm)).has(target.href))
      throw new OutboundRefused(target.origin)
    const { dispatcher: _ignored, ...rest } = init
    return transport(target.href, { ...rest, redirect: 'manual' })
  }
}

type Job = {
  id: number
  realm: string
  client_id: string
  account_id: string
  sid: string
  attempts: number
}

/** What the sender needs of a realm's OP: a client that can send its logout token. */
export type LogoutClientFinder = (
  realm: string,
  clientId: string,
) => Promise<
  | { backchannelLogoutUri?: string; backchannelLogout(sub: string, sid: string): Promise<void> }
  | undefined
>

export interface BackchannelOptions {
  db: Db
  events: EventSink
  log: Logger
  findClient: LogoutClientFinder
  /** How often queued logouts are looked at without a notification (ms). */
  sweepInterval?: number
}

/** Attempts per logout (about an hour of backoff in all) before it is given up. */
export const MAX_ATTEMPTS = 6
const BATCH = 25
/** A claimed logout is not retried by another process for this long (s). */
const LEASE_SECONDS = 60
const backoffSeconds = (attempts: number) => Math.min(3600, 10 * 4 ** (attempts - 1))

/**
 * Sends the back-channel logouts queued by `endSession` (admin session revocation, disabled or
 * deleted users): woken by NOTIFY when the ending transaction commits, and by a periodic sweep.
 * Several processes may run it: a logout is claimed with `FOR UPDATE SKIP LOCKED` and a lease.
 * Each attempt is a security event; failures are retried with exponential backoff.
 */
export class BackchannelLogouts {
  readonly #opts: BackchannelOptions
  #running: Promise<void> | undefined
  #again = false
  #stopped = false
  #timer: NodeJS.Timeout | undefined
  #unlisten: (() => Promise<void>) | undefined

  constructor(opts: BackchannelOptions) {
    this.#opts = opts
  }

  async start() {
    this.#stopped = false
    // A lost listener connection (LISTENER_LOST) may have dropped notifications: look now too.
    this.#unlisten = await this.#opts.db.listen(BACKCHANNEL_CHANNEL, () => this.kick())
    this.#timer = setInterval(() => this.kick(), this.#opts.sweepInterval ?? 30_000)
    this.#timer.unref()
    this.kick()
  }

  async stop() {
    this.#stopped = true
    if (this.#timer) clearInterval(this.#timer)
    await this.#unlisten?.().catch(() => {})
    await this.#running
  }

  /** Looks for due logouts now (coalesced with a run in progress). */
  kick() {
    if (this.#stopped) return
    if (this.#running) {
      this.#again = true
      return
    }
    this.#running = this.#drain()
      .catch((err) => this.#opts.log.error({ err: String(err) }, 'iam: back-channel logout failed'))
      .finally(() => {
        this.#running = undefined
      })
  }

  async #drain() {
    do {
      this.#again = false
      for (;;) {
        if (this.#stopped) return
        const jobs = await this.#claim()
        if (jobs.length === 0) break
        await Promise.all(jobs.map((j) => this.#deliver(j)))
      }
    } while (this.#again)
  }

  async #claim(): Promise<Job[]> {
    const { rows } = await this.#opts.db.query<Job>(
      `UPDATE iam.backchannel_logouts SET attempts = attempts + 1,
         next_attempt_at = now() + make_interval(secs => $1)
       WHERE id IN (SELECT id FROM iam.backchannel_logouts WHERE next_attempt_at <= now()
                    ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
       RETURNING id, realm, client_id, account_id, sid, attempts`,
      [LEASE_SECONDS, BATCH],
    )
    return rows
  }

  async #deliver(job: Job) {
    const { db, events } = this.#opts
    const record = (outcome: 'success' | 'failure', reason?: string, final = true) =>
      events.record({
        type: 'auth.backchannel_logout',
        tenant: job.realm,
        actor: { kind: 'system', id: 'iam' },
        action: 'logout:Backchannel',
        resource: { type: 'Client', id: job.client_id },
        outcome,
        ...(reason ? { reason } : {}),
        details: { user: job.account_id, attempt: job.attempts, final },
      })
    let client: Awaited<ReturnType<LogoutClientFinder>>
    try {
      client = await this.#opts.findClient(job.realm, job.client_id)
    } catch {
      client = undefined
    }
    if (!client?.backchannelLogoutUri) {
      // The realm or the client is gone, or no longer wants back-channel logouts.
      await db.query('DELETE FROM iam.backchannel_logouts WHERE id = $1', [job.id])
      await record('failure', 'client_unavailable')
      return
    }
    try {
      await client.backchannelLogout(job.account_id, job.sid)
      await db.query('DELETE FROM iam.backchannel_logouts WHERE id = $1', [job.id])
      await record('success')
    } catch (err) {
      const reason = err instanceof OutboundRefused ? 'destination_refused' : 'delivery_failed'
      this.#opts.log.warn(
        { realm: job.realm, client: job.client_id, attempt: job.attempts, err: String(err) },
        'iam: back-channel logout not delivered',
      )
      const final = job.attempts >= MAX_ATTEMPTS
      if (final) await db.query('DELETE FROM iam.backchannel_logouts WHERE id = $1', [job.id])
      else
        await db.query(
          `UPDATE iam.backchannel_logouts SET next_attempt_at = now() + make_interval(secs => $2)
           WHERE id = $1`,
          [job.id, backoffSeconds(job.attempts)],
        )
      await record('failure', reason, final)
    }
  }
}
