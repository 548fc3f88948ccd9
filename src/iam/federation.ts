import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import * as oidc from 'openid-client'
import type { Db } from '../core/db/index.ts'
import type { EventSink } from '../core/events.ts'
import { DbAdapter } from './adapter.ts'
import type { AdminDeps } from './admin/context.ts'
import { idpSecretAad } from './admin/identity-providers.ts'
import { mirrorUser } from './admin/users.ts'
import type { CaFetch } from './https-fetch.ts'
import type { Sealer } from './kek.ts'

/**
 * SSO federation: a realm signs users in at an upstream OIDC provider (code + PKCE, state and
 * nonce checked by openid-client), provisions them just in time and maps upstream groups onto
 * local groups. The upstream result is stored server-side under a random state and only
 * completes the login interaction whose cookie the browser holds, so a state from another
 * browser cannot log this one in.
 */
export interface IdpRow {
  alias: string
  issuer: string
  client_id: string
  client_secret_enc: Buffer | null
  email_domains: string[]
  groups_claim: string
  group_mapping: Record<string, string>
}

type BrokerState = {
  uid: string
  alias: string
  verifier: string
  nonce: string
  /** Set once the upstream login succeeded. */
  userId?: string
  amr?: string[]
}

const STATE_TTL = 600

export class Federation {
  readonly #db: Db
  readonly #sealer: Sealer
  readonly #events: EventSink
  readonly #admin: AdminDeps
  readonly #fetch: CaFetch | undefined
  readonly #issuer: (realm: string) => string
  readonly #configs = new Map<string, { at: number; config: oidc.Configuration }>()

  constructor(opts: {
    db: Db
    sealer: Sealer
    events: EventSink
    admin: AdminDeps
    issuer: (realm: string) => string
    /** Fetch trusting the internal CA as well (for upstreams under it); system trust otherwise. */
    fetch?: CaFetch
  }) {
    this.#db = opts.db
    this.#sealer = opts.sealer
    this.#events = opts.events
    this.#admin = opts.admin
    this.#fetch = opts.fetch
    this.#issuer = opts.issuer
  }

  async providers(realm: string): Promise<IdpRow[]> {
    const { rows } = await this.#db.query<IdpRow>(
      'SELECT * FROM iam.identity_providers WHERE realm = $1 ORDER BY alias',
      [realm],
    )
    return rows
  }

  /** Home-realm discovery: the IdP that owns the email's (verified) domain, if any. */
  async forEmail(realm: string, email: string): Promise<IdpRow | undefined> {
    const domain = email.split('@')[1]?.toLowerCase()
    if (!domain) return undefined
    const { rows } = await this.#db.query<IdpRow>(
      'SELECT * FROM iam.identity_providers WHERE realm = $1 AND $2 = ANY (email_domains) LIMIT 1',
      [realm, domain],
    )
    return rows[0]
  }

  redirectUri(realm: string, alias: string) {
    return `${this.#issuer(realm)}/broker/${alias}/callback`
  }

  async #config(realm: string, idp: IdpRow) {
    const key = `${realm}/${idp.alias}`
    const hit = this.#configs.get(key)
    if (hit && Date.now() - hit.at < 300_000) return hit.config
    const secret = idp.client_secret_enc
      ? this.#sealer.open(idp.client_secret_enc, idpSecretAad(realm, idp.alias)).toString('utf8')
      : undefined
    const config = await oidc.discovery(
      new URL(idp.issuer),
      idp.client_id,
      { redirect_uris: [this.redirectUri(realm, idp.alias)] },
      secret ? oidc.ClientSecretBasic(secret) : oidc.None(),
      this.#fetch ? { [oidc.customFetch]: this.#fetch } : undefined,
    )
    this.#configs.set(key, { at: Date.now(), config })
    return config
  }

  /** Starts the upstream login for interaction `uid`; returns the upstream authorization URL. */
  async begin(realm: string, uid: string, idp: IdpRow, loginHint?: string): Promise<URL> {
    const config = await this.#config(realm, idp)
    const verifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const nonce = oidc.randomNonce()
    const store = new DbAdapter(this.#db, realm, 'BrokerState')
    await store.upsert(
      state,
      { uid, alias: idp.alias, verifier, nonce } satisfies BrokerState,
      STATE_TTL,
    )
    return oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.redirectUri(realm, idp.alias),
      scope: `openid email profile ${idp.groups_claim === 'groups' ? 'groups' : ''}`.trim(),
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...(loginHint ? { login_hint: loginHint } : {}),
    })
  }

  /**
   * The upstream redirect: exchanges the code (checking state, nonce, PKCE, issuer, signature),
   * provisions or updates the local user, and returns where the browser continues.
   */
  async callback(realm: string, alias: string, currentUrl: URL, sourceIp?: string) {
    const state = currentUrl.searchParams.get('state') ?? ''
    const store = new DbAdapter(this.#db, realm, 'BrokerState')
    const pending = (await store.find(state)) as BrokerState | undefined
    if (!pending || pending.alias !== alias || pending.userId)
      throw new Error('unknown or used state')
    const { rows } = await this.#db.query<IdpRow>(
      'SELECT * FROM iam.identity_providers WHERE realm = $1 AND alias = $2',
      [realm, alias],
    )
    const idp = rows[0]
    if (!idp) throw new Error('identity provider removed')
    const config = await this.#config(realm, idp)
    let claims: oidc.IDToken
    try {
      const tokens = await oidc.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: pending.verifier,
        expectedState: state,
        expectedNonce: pending.nonce,
        idTokenExpected: true,
      })
      claims = tokens.claims()!
    } catch (err) {
      await store.destroy(state)
      await this.#events.record({
        type: 'auth.login',
        tenant: realm,
        actor: { kind: 'anonymous', id: `idp:${alias}` },
        action: 'login:federated',
        outcome: 'failure',
        reason: 'upstream_rejected',
        sourceIp,
        details: { idp: alias, error: (err as { code?: string }).code ?? 'error' },
      })
      throw err
    }
    const userId = await this.#provision(realm, idp, claims, sourceIp)
    const upstreamAmr = Array.isArray(claims.amr) ? claims.amr.map(String) : []
    const amr = ['fed', ...(upstreamAmr.includes('mfa') ? ['mfa'] : [])]
    await store.upsert(state, { ...pending, userId, amr } satisfies BrokerState, STATE_TTL)
    return `/realms/${realm}/interaction/${pending.uid}/federated?state=${encodeURIComponent(state)}`
  }

  /** The completed upstream login for this interaction, consumed once. */
  async complete(realm: string, uid: string, state: string) {
    const store = new DbAdapter(this.#db, realm, 'BrokerState')
    const done = (await store.find(state)) as BrokerState | undefined
    if (!done?.userId || done.uid !== uid) return undefined
    await store.destroy(state)
    return { userId: done.userId, amr: done.amr ?? ['fed'] }
  }

  async #provision(realm: string, idp: IdpRow, claims: oidc.IDToken, sourceIp?: string) {
    const sub = String(claims.sub)
    const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : undefined
    const emailDomain = email?.split('@')[1]
    // An upstream email is trusted only when verified and inside the IdP's own domains.
    const trustedEmail =
      email &&
      claims.email_verified === true &&
      emailDomain &&
      idp.email_domains.includes(emailDomain)
        ? email
        : undefined
    const upstreamGroups = claims[idp.groups_claim]
    const groups = Array.isArray(upstreamGroups) ? upstreamGroups.map(String) : []
    const mapped = new Set(
      groups.flatMap((g) => (idp.group_mapping[g] ? [idp.group_mapping[g]] : [])),
    )
    const managed = new Set(Object.values(idp.group_mapping))
    return this.#db.transaction(async (tx) => {
      const linked = await tx.query<{ user_id: string }>(
        `SELECT user_id FROM iam.federated_identities WHERE realm = $1 AND idp_alias = $2 AND upstream_sub = $3`,
        [realm, idp.alias, sub],
      )
      let userId = linked.rows[0]?.user_id
      const created = !userId
      if (!userId) {
        userId = randomUUID()
        const preferred =
          typeof claims.preferred_username === 'string' ? claims.preferred_username : sub
        await tx.query(
          `INSERT INTO iam.users (realm, id, username, email, email_verified, display_name)
           VALUES ($1, $2, $3, $4, $5, $6)`,
          [
            realm,
            userId,
            `${idp.alias}:${preferred}`.slice(0, 128),
            trustedEmail ?? null,
            trustedEmail !== undefined,
            typeof claims.name === 'string' ? claims.name.slice(0, 200) : preferred,
          ],
        )
        await tx.query(
          `INSERT INTO iam.federated_identities (realm, idp_alias, upstream_sub, user_id) VALUES ($1, $2, $3, $4)`,
          [realm, idp.alias, sub, userId],
        )
      }
      // Groups this IdP manages follow the upstream claim on every login.
      for (const g of managed) {
        if (mapped.has(g))
          await tx.query(
            `INSERT INTO iam.memberships (realm, group_id, user_id)
             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM iam.groups WHERE realm = $1 AND id = $2)
             ON CONFLICT DO NOTHING`,
            [realm, g, userId],
          )
        else
          await tx.query(
            'DELETE FROM iam.memberships WHERE realm = $1 AND group_id = $2 AND user_id = $3',
            [realm, g, userId],
          )
      }
      await mirrorUser(this.#admin, tx, realm, userId)
      await this.#events.record(
        {
          type: 'auth.login',
          tenant: realm,
          actor: { kind: 'user', id: userId },
          action: 'login:federated',
          outcome: 'success',
          sourceIp,
          details: { idp: idp.alias, provisioned: created, groups: [...mapped] },
        },
        tx,
      )
      return userId
    })
  }
}

export type FederationRouteHelpers = {
  html: (reply: FastifyReply, body: string, status?: number) => unknown
  page: (title: string, body: string) => string
}

/** The upstream redirect endpoint (outside the interaction path, so no interaction cookie). */
export function federationCallbackRoute(
  app: FastifyInstance,
  fed: Federation,
  h: FederationRouteHelpers,
) {
  app.get(
    '/realms/:realm/broker/:alias/callback',
    async (req: FastifyRequest, reply: FastifyReply) => {
      const { realm, alias } = req.params as { realm: string; alias: string }
      if (!/^[a-z][a-z0-9-]{1,62}$/.test(realm) || !/^[a-z][a-z0-9-]{0,62}$/.test(alias))
        return h.html(reply, h.page('Sign-in error', '<p>Unknown identity provider.</p>'), 404)
      try {
        const current = new URL(req.url, fed.redirectUri(realm, alias))
        return reply.redirect(await fed.callback(realm, alias, current, req.ip), 303)
      } catch {
        return h.html(
          reply,
          h.page('Sign-in error', '<p>Your organisation’s sign-in did not succeed.</p>'),
          400,
        )
      }
    },
  )
}
