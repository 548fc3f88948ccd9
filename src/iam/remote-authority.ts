import type { Logger } from 'pino'
import { problems } from '../core/errors.ts'
import type { TokenAuthority, VerifiedToken } from '../gateway/authenticate.ts'
import type { PeerClient } from '../pki/peer-client.ts'
import { issuerOf } from './issuer.ts'
import { TokenRejected } from './verify.ts'

/**
 * Identity for a process without the iam component (`dflare serve`): the gateway's
 * TokenAuthority, realm and project existence, answered by iam's internal endpoints over mutual
 * TLS. Fails closed: an unreachable iam rejects tokens (401) and makes existence checks fail
 * (503), never "exists" or "valid".
 *
 * The issuer base (iam's public URL) is fetched once iam is reachable; until then `issuer`
 * throws 503 and `ready()` says what it is waiting for.
 */
const TTL_CACHE_MS = 5_000

function isVerified(v: unknown): v is VerifiedToken {
  const c = v as VerifiedToken
  return (
    !!c &&
    typeof c.sub === 'string' &&
    typeof c.tid === 'string' &&
    typeof c.client_id === 'string' &&
    Number.isInteger(c.iat) &&
    Number.isInteger(c.exp) &&
    typeof c.jti === 'string' &&
    !!c.scope &&
    typeof c.scope === 'object' &&
    typeof (c.scope as { kind?: unknown }).kind === 'string' &&
    Array.isArray(c.amr) &&
    c.amr.every((a) => typeof a === 'string') &&
    (c.auth_time === undefined || Number.isInteger(c.auth_time)) &&
    (c.sid === undefined || typeof c.sid === 'string') &&
    typeof c.service === 'boolean' &&
    !!c.raw &&
    typeof c.raw === 'object'
  )
}

export class RemoteIdentity implements TokenAuthority {
  readonly #client: PeerClient
  readonly #log: Logger | undefined
  #origin: URL | undefined
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  readonly #ttl = new Map<string, { value: number; at: number }>()

  constructor(client: PeerClient, log?: Logger) {
    this.#client = client
    this.#log = log
  }

  /** Fetches the issuer base, retrying with backoff until iam answers. */
  start(): void {
    let delay = 250
    const attempt = async () => {
      if (this.#stopped) return
      try {
        const r = await this.#client.request('GET', '/internal/v1/iam/issuer', undefined, {
          idempotent: true,
        })
        const origin = (r.body as { origin?: unknown })?.origin
        if (r.status !== 200 || typeof origin !== 'string') throw new Error(`HTTP ${r.status}`)
        const url = new URL(origin)
        if (url.protocol !== 'https:') throw new Error('issuer is not https')
        this.#origin = url
        this.#log?.info({ issuerOrigin: url.origin }, 'identity service reached')
      } catch (err) {
        this.#log?.warn({ err: (err as Error).message, retryMs: delay }, 'waiting for iam')
        this.#timer = setTimeout(attempt, delay).unref()
        delay = Math.min(delay * 2, 5_000)
      }
    }
    void attempt()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#client.close()
  }

  /** Undefined when usable, else what it is waiting for (for /readyz). */
  ready(): string | undefined {
    return this.#origin ? undefined : `iam at ${this.#client.url.host} not reached yet`
  }

  issuer(realm: string): string {
    if (!this.#origin) throw problems.unavailable('The identity service is not reachable yet')
    return issuerOf(this.#origin, realm)
  }

  async verifyAccessToken(token: string, expectedRealm: string): Promise<VerifiedToken> {
    const r = await this.#client.request(
      'POST',
      '/internal/v1/iam/tokens/verify',
      { token, realm: expectedRealm },
      { idempotent: true },
    )
    if (r.status === 401) throw new TokenRejected('rejected by iam')
    const body = r.body as { claims?: unknown; maxAccessTokenTtl?: unknown }
    if (r.status !== 200 || !isVerified(body?.claims))
      throw new Error(`token verification failed at iam: HTTP ${r.status}`)
    if (Number.isInteger(body.maxAccessTokenTtl))
      this.#ttl.set(expectedRealm, { value: body.maxAccessTokenTtl as number, at: Date.now() })
    return body.claims
  }

  async maxAccessTokenTtl(realm: string): Promise<number> {
    const cached = this.#ttl.get(realm)
    if (cached && Date.now() - cached.at < TTL_CACHE_MS) return cached.value
    const info = await this.#realm(realm)
    if (!Number.isInteger(info.maxAccessTokenTtl)) throw this.#unavailable()
    return info.maxAccessTokenTtl as number
  }

  async realmExists(realm: string): Promise<boolean> {
    return (await this.#realm(realm)).exists === true
  }

  async projectExists(realm: string, project: string): Promise<boolean> {
    const r = await this.#get(
      `/internal/v1/iam/realms/${encodeURIComponent(realm)}/projects/${encodeURIComponent(project)}`,
    )
    if (r.status === 400) return false
    const exists = (r.body as { exists?: unknown })?.exists
    if (r.status !== 200 || typeof exists !== 'boolean') throw this.#unavailable()
    return exists
  }

  async #realm(realm: string): Promise<{ exists?: unknown; maxAccessTokenTtl?: unknown }> {
    const r = await this.#get(`/internal/v1/iam/realms/${encodeURIComponent(realm)}`)
    // A name iam's schema refuses cannot be an existing realm.
    if (r.status === 400) return { exists: false }
    const body = r.body as { exists?: unknown; maxAccessTokenTtl?: unknown }
    if (r.status !== 200 || typeof body?.exists !== 'boolean') throw this.#unavailable()
    return body
  }

  async #get(path: string) {
    try {
      return await this.#client.request('GET', path, undefined, { idempotent: true })
    } catch (err) {
      this.#log?.error({ err: (err as Error).message }, 'iam unreachable')
      throw this.#unavailable()
    }
  }

  #unavailable() {
    return problems.unavailable('The identity service is unavailable')
  }
}
