import { hkdfSync, type X509Certificate } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import Provider, { errors } from 'oidc-provider'
import type { Db } from '../core/db/index.ts'
import type { EventSink, SecurityEvent } from '../core/events.ts'
import { ClientAdapter, DbAdapter, recordRevokedSids } from './adapter.ts'
import { providerFetch } from './backchannel.ts'
import { errorLine, esc, page } from './html.ts'
import type { CaFetch } from './https-fetch.ts'
import { ACR_FED, ACR_MFA, ACR_PWD, issuerOf, TOKEN_EXCHANGE } from './issuer.ts'
import type { Sealer } from './kek.ts'
import { loadKeys } from './keys.ts'
import { formatTokenScope, isNarrowing, SCOPE_CLAIM, scopeFromParam } from './scope.ts'
import type { AccessTokenVerifier } from './verify.ts'
import { TokenRejected } from './verify.ts'

export { ACR_FED, ACR_MFA, ACR_PWD, issuerOf, TOKEN_EXCHANGE }

const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'

export interface ProviderDeps {
  db: Db
  sealer: Sealer
  kek: Buffer
  events: EventSink
  verifier: AccessTokenVerifier
  publicUrl: URL
  /** Audience of platform API access tokens: `${publicUrl}/api`. */
  apiAudience: string
  ttl: { accessToken: number; idToken: number; refreshIdle: number; refreshMax: number }
  /**
   * TLS transport for the OP's outbound calls (back-channel logout tokens), trusting the system
   * roots and the internal CA; only registered back-channel logout URIs are reachable through it.
   */
  outbound: CaFetch
}

type RealmRow = { id: string; access_token_ttl: number | null; disabled: boolean }

function cookieKeys(kek: Buffer, realm: string) {
  return [
    Buffer.from(hkdfSync('sha256', kek, realm, 'dflare iam cookie key v1', 32)).toString(
      'base64url',
    ),
  ]
}

// biome-ignore lint/suspicious/noExplicitAny: oidc-provider context objects are untyped
type Ctx = any

function peerCertificate(ctx: Ctx): X509Certificate | undefined {
  const socket = ctx.req.socket as TLSSocket
  if (typeof socket.getPeerX509Certificate !== 'function') return undefined
  return socket.getPeerX509Certificate() ?? undefined
}

/** Distinguished names compared as sets of normalised RDNs (order differs between notations). */
function sameDn(a: string[], b: string[]) {
  const norm = (rdns: string[]) =>
    rdns
      .map((r) =>
        r
          .trim()
          .replace(/\s*=\s*/, '=')
          .toLowerCase(),
      )
      .filter(Boolean)
      .sort()
      .join(',')
  return norm(a) === norm(b)
}

/** Where amr/acr/auth_time of a token come from: the code, refresh token or device code it was minted from. */
function authSource(ctx: Ctx, token: Ctx) {
  const e = ctx?.oidc?.entities ?? {}
  return e.AuthorizationCode ?? e.RefreshToken ?? e.DeviceCode ?? token
}

export async function buildProvider(deps: ProviderDeps, realm: RealmRow): Promise<Provider> {
  const { db, sealer, events } = deps
  const issuer = issuerOf(deps.publicUrl, realm.id)
  const keys = await loadKeys(db, sealer, realm.id)
  if (keys.signing.length === 0) throw new Error(`realm ${realm.id} has no signing key`)
  const atTtl = Math.min(900, realm.access_token_ttl ?? Math.round(deps.ttl.accessToken / 1000))
  const refreshIdle = Math.round(deps.ttl.refreshIdle / 1000)
  const refreshMax = Math.round(deps.ttl.refreshMax / 1000)

  const record = (e: Omit<SecurityEvent, 'tenant'>) =>
    events.record({ tenant: realm.id, ...e }).catch(() => undefined)

  class Adapter extends DbAdapter {
    constructor(model: string) {
      super(db, realm.id, model)
    }
  }
  const clientAdapter = new ClientAdapter(db, realm.id, sealer)

  const resourceServer = {
    scope: 'api',
    audience: deps.apiAudience,
    accessTokenTTL: atTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  }

  const provider = new Provider(issuer, {
    adapter: (model: string) => (model === 'Client' ? clientAdapter : new Adapter(model)),
    // Outbound HTTP: back-channel logout URIs registered by the realm's clients, nothing else.
    fetch: providerFetch(db, realm.id, deps.outbound),
    jwks: { keys: keys.signing },
    cookies: {
      keys: cookieKeys(deps.kek, realm.id),
      long: { signed: true, secure: true, sameSite: 'lax' },
      short: { signed: true, secure: true, sameSite: 'lax' },
      names: {
        session: `dflare_${realm.id}_session`,
        interaction: `dflare_${realm.id}_interaction`,
        resume: `dflare_${realm.id}_resume`,
      },
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups', 'api'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    acrValues: [ACR_PWD, ACR_MFA, ACR_FED],
    // ID tokens carry the claims of the requested scopes (email, groups), so a realm federating
    // to another one needs no userinfo call.
    conformIdTokenClaims: false,
    async findAccount(_ctx: Ctx, sub: string) {
      const { rows } = await db.query<{
        id: string
        username: string
        email: string | null
        email_verified: boolean
        display_name: string
        groups: string[]
      }>(
        `SELECT u.id, u.username, u.email, u.email_verified, u.display_name,
           coalesce(array_agg(g.name) FILTER (WHERE g.name IS NOT NULL), '{}') AS groups
         FROM iam.users u
         LEFT JOIN iam.memberships m ON m.realm = u.realm AND m.user_id = u.id
         LEFT JOIN iam.groups g ON g.realm = m.realm AND g.id = m.group_id
         WHERE u.realm = $1 AND u.id = $2 AND NOT u.disabled
         GROUP BY u.id, u.username, u.email, u.email_verified, u.display_name`,
        [realm.id, sub],
      )
      const u = rows[0]
      if (!u) return undefined
      return {
        accountId: u.id,
        async claims() {
          return {
            sub: u.id,
            preferred_username: u.username,
            name: u.display_name || u.username,
            email: u.email ?? undefined,
            email_verified: u.email ? u.email_verified : undefined,
            groups: u.groups,
          }
        },
      }
    },
    interactions: {
      url: (_ctx: Ctx, interaction: { uid: string }) =>
        `/realms/${realm.id}/interaction/${interaction.uid}`,
    },
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      id_token_signed_response_alg: 'RS256',
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt', 'tls_client_auth', 'none'],
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256'],
      userinfoSigningAlgValues: ['RS256'],
      introspectionSigningAlgValues: ['RS256'],
      authorizationSigningAlgValues: ['RS256'],
      clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
      requestObjectSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    },
    extraClientMetadata: { properties: ['first_party'] },
    pkce: { required: () => true },
    responseTypes: ['code', 'none'],
    rotateRefreshToken: true,
    issueRefreshToken: async (_ctx: Ctx, client: Ctx, code: Ctx) =>
      client.grantTypeAllowed('refresh_token') && code.kind !== 'ClientCredentials',
    // Refresh tokens and access tokens die with the login session (logout, admin revocation).
    expiresWithSession: async () => true,
    ttl: {
      AccessToken: atTtl,
      ClientCredentials: atTtl,
      IdToken: Math.round(deps.ttl.idToken / 1000),
      AuthorizationCode: 60,
      DeviceCode: 600,
      Interaction: 900,
      Session: refreshMax,
      Grant: refreshMax,
      // Sliding, but never past the absolute maximum counted from the first token (iiat).
      RefreshToken(_ctx: Ctx, token: { iiat?: number; iat?: number }) {
        const now = Math.floor(Date.now() / 1000)
        const first = token.iiat ?? token.iat ?? now
        return Math.max(1, Math.min(refreshIdle, first + refreshMax - now))
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx: Ctx, client: Ctx, token: Ctx) =>
          client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      revocation: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx: Ctx, form: string) => {
          ctx.body = page(
            'Sign out',
            `${form}<p>Sign out of ${esc(realm.id)}?</p>
             <button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
             <button type="submit" form="op.logoutForm">No, stay signed in</button>`,
          )
        },
        postLogoutSuccessSource: async (ctx: Ctx) => {
          ctx.body = page('Signed out', '<p>You are signed out.</p>')
        },
      },
      // Logout tokens to clients that registered a back-channel logout URI: sent here on
      // RP-initiated logout, by BackchannelLogouts when an admin or the directory ends a session.
      backchannelLogout: { enabled: true },
      deviceFlow: {
        enabled: true,
        charset: 'base-20',
        mask: '****-****',
        userCodeInputSource: async (ctx: Ctx, form: string, _out: unknown, err: Ctx) => {
          ctx.body = page(
            'Device sign-in',
            `${errorLine(err ? 'That code is not valid; try again.' : undefined)}
             <p>Enter the code shown on your device.</p>${form}
             <button type="submit" form="op.deviceInputForm">Continue</button>`,
          )
        },
        userCodeConfirmSource: async (
          ctx: Ctx,
          form: string,
          client: Ctx,
          _info: unknown,
          userCode: string,
        ) => {
          ctx.body = page(
            'Confirm device',
            `<p>Allow <strong>${esc(client.clientName ?? client.clientId)}</strong> on the device
             showing <strong>${esc(userCode)}</strong>?</p>${form}
             <button type="submit" form="op.deviceConfirmForm" id="confirm">Allow</button>
             <button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Deny</button>`,
          )
        },
        successSource: async (ctx: Ctx) => {
          ctx.body = page('Device signed in', '<p>You can return to your device.</p>')
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => deps.apiAudience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: Ctx, resource: string) => {
          if (resource !== deps.apiAudience) throw new errors.InvalidTarget!()
          return resourceServer
        },
      },
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        certificateBoundAccessTokens: false,
        getCertificate: (ctx: Ctx) => peerCertificate(ctx)?.toString(),
        certificateAuthorized: (ctx: Ctx) => (ctx.req.socket as TLSSocket).authorized === true,
        certificateSubjectMatches: (ctx: Ctx, property: string, expected: string) => {
          const cert = peerCertificate(ctx)
          if (!cert) return false
          if (property === 'tls_client_auth_subject_dn')
            return sameDn(cert.subject.split('\n'), expected.split(','))
          if (property === 'tls_client_auth_san_dns')
            return (cert.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`)
          return false
        },
      },
    },
    async extraTokenClaims(ctx: Ctx, token: Ctx) {
      const exchanged = ctx?.dflareExchange as Record<string, unknown> | undefined
      if (exchanged) return exchanged
      if (token.kind !== 'AccessToken' && token.kind !== 'ClientCredentials') return undefined
      const src = authSource(ctx, token)
      const claims: Record<string, unknown> = { tid: realm.id, [SCOPE_CLAIM]: 'org' }
      if (token.kind === 'AccessToken') {
        if (src.amr) claims.amr = src.amr
        if (src.acr) claims.acr = src.acr
        if (src.authTime) claims.auth_time = src.authTime
        // The login session (stable across session id rotation); admin revocation and logout
        // record it as revoked for the gateway.
        const sessionUid = token.sessionUid ?? src.sessionUid
        if (sessionUid) claims.sid = sessionUid
      }
      return claims
    },
    async renderError(ctx: Ctx, out: Record<string, string>) {
      ctx.type = 'html'
      ctx.body = page(
        'Sign-in error',
        `<p>${esc(out.error)}</p><p>${esc(out.error_description ?? '')}</p>`,
      )
    },
  })
  provider.proxy = false

  // oidc-provider refuses JWTs at revocation and introspection (it does not store them). Once it
  // has authenticated the client, answer for our own JWT access tokens: revocation records the
  // jti (the gateway checks it), introspection reports the verified claims.
  provider.use(async (ctx: Ctx, next: () => Promise<void>) => {
    await next()
    const route = ctx.oidc?.route
    if (route !== 'revocation' && route !== 'introspection') return
    if (ctx.status !== 400 || ctx.body?.error !== 'unsupported_token_type') return
    const client = ctx.oidc.client
    if (!client) return
    let claims: Awaited<ReturnType<AccessTokenVerifier['verify']>> | undefined
    try {
      claims = await deps.verifier.verify(String(ctx.oidc.params?.token ?? ''), realm.id)
    } catch {
      claims = undefined
    }
    const own = claims?.client_id === client.clientId
    ctx.status = 200
    if (route === 'introspection') {
      const allowed = claims && (own || client.clientAuthMethod !== 'none')
      ctx.body = allowed
        ? { ...claims!.raw, active: true, token_type: 'Bearer' }
        : { active: false }
      return
    }
    ctx.body = ''
    if (!claims || !own) return
    await db.query(
      `INSERT INTO iam.revoked_tokens (jti, realm, expires_at) VALUES ($1, $2, to_timestamp($3))
       ON CONFLICT DO NOTHING`,
      [claims.jti, realm.id, claims.exp + 60],
    )
    void record({
      type: 'token.revoked',
      actor: { kind: 'service', id: client.clientId },
      action: 'token:Revoke',
      resource: { type: 'AccessToken', id: claims.jti },
      outcome: 'success',
      sourceIp: ctx.ip,
    })
  })

  // RFC 8693 token exchange: trade an access token of this realm for one with a narrower scope.
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    async (ctx: Ctx) => {
      const { params, client } = ctx.oidc
      if (params.subject_token_type !== ACCESS_TOKEN_TYPE)
        throw new errors.InvalidRequest!('subject_token_type must be an access token')
      if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE)
        throw new errors.InvalidRequest!('only access tokens can be requested')
      let subject: Awaited<ReturnType<AccessTokenVerifier['verify']>>
      try {
        subject = await deps.verifier.verify(String(params.subject_token), realm.id)
      } catch (err) {
        const reason = err instanceof TokenRejected ? err.reason : 'invalid'
        throw new errors.InvalidGrant!(`subject_token ${reason}`)
      }
      if (subject.client_id !== client.clientId)
        throw new errors.InvalidGrant!('subject_token was issued to another client')
      const target = scopeFromParam(params.scope)
      if (target === 'ambiguous' || !target)
        throw new errors.InvalidScope!('request exactly one of org, domain:{id}, project:{id}')
      if (!(await isNarrowing(db, realm.id, subject.scope, target))) {
        void record({
          type: 'token.exchanged',
          actor: { kind: subject.service ? 'service' : 'user', id: subject.sub },
          action: 'token:Exchange',
          outcome: 'denied',
          reason: 'scope_widening',
          details: { from: formatTokenScope(subject.scope), to: formatTokenScope(target) },
        })
        throw new errors.InvalidScope!('token exchange can only narrow the scope')
      }
      const claims: Record<string, unknown> = {
        tid: realm.id,
        [SCOPE_CLAIM]: formatTokenScope(target),
        ...(subject.amr.length ? { amr: subject.amr } : {}),
        ...(subject.acr ? { acr: subject.acr } : {}),
        ...(subject.auth_time ? { auth_time: subject.auth_time } : {}),
        ...(subject.sid ? { sid: subject.sid } : {}),
      }
      ctx.dflareExchange = claims
      const { AccessToken, ClientCredentials, ResourceServer } = ctx.oidc.provider
      const token = subject.service
        ? new ClientCredentials({ client, scope: subject.scopeParam || undefined })
        : new AccessToken({
            accountId: subject.sub,
            client,
            gty: 'token_exchange',
            scope: subject.scopeParam || undefined,
            sid: subject.sid,
          })
      token.resourceServer = new ResourceServer(deps.apiAudience, resourceServer)
      const value = await token.save()
      void record({
        type: 'token.exchanged',
        actor: { kind: subject.service ? 'service' : 'user', id: subject.sub },
        action: 'token:Exchange',
        outcome: 'success',
        details: {
          client: client.clientId,
          from: formatTokenScope(subject.scope),
          to: formatTokenScope(target),
          subject_jti: subject.jti,
        },
      })
      ctx.body = {
        access_token: value,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: 'Bearer',
        expires_in: token.expiration,
        scope: subject.scopeParam || undefined,
      }
    },
    [
      'subject_token',
      'subject_token_type',
      'requested_token_type',
      'scope',
      'resource',
      'audience',
    ],
  )

  // Security events for the token lifecycle (never the token values).
  const tokenEvent = (type: string, outcome: SecurityEvent['outcome']) => (ctx: Ctx) => {
    const at = ctx.oidc?.entities?.AccessToken ?? ctx.oidc?.entities?.ClientCredentials
    const account = ctx.oidc?.entities?.Account?.accountId
    void record({
      type,
      actor: account
        ? { kind: 'user', id: account }
        : { kind: 'service', id: ctx.oidc?.client?.clientId ?? 'unknown' },
      action: `token:${ctx.oidc?.params?.grant_type ?? ctx.oidc?.route}`,
      outcome,
      sourceIp: ctx.ip,
      details: { client: ctx.oidc?.client?.clientId, jti: at?.jti },
    })
  }
  provider.on('grant.success', (ctx: Ctx) => {
    const refreshed = ctx.oidc?.params?.grant_type === 'refresh_token'
    tokenEvent(refreshed ? 'token.refreshed' : 'token.issued', 'success')(ctx)
  })
  provider.on('grant.error', (ctx: Ctx, err: Ctx) => {
    void record({
      type: 'token.issued',
      actor: { kind: 'service', id: ctx.oidc?.client?.clientId ?? 'unknown' },
      action: `token:${ctx.oidc?.params?.grant_type ?? 'unknown'}`,
      outcome: 'failure',
      reason: String(err?.error ?? 'error'),
      sourceIp: ctx.ip,
      details: { description: String(err?.error_description ?? '') },
    })
  })
  provider.on('grant.revoked', (ctx: Ctx, grantId: string) => {
    void record({
      type: 'token.revoked',
      actor: { kind: 'service', id: ctx?.oidc?.client?.clientId ?? 'system' },
      action: 'token:RevokeGrant',
      resource: { type: 'Grant', id: grantId },
      outcome: 'success',
      reason: ctx?.oidc?.route === 'token' ? 'refresh_token_reuse' : ctx?.oidc?.route,
    })
  })
  const backchannel =
    (outcome: 'success' | 'failure') =>
    (ctx: Ctx, ...rest: Ctx[]) => {
      const [err, client, accountId] = outcome === 'failure' ? rest : [undefined, ...rest]
      void record({
        type: 'auth.backchannel_logout',
        actor: { kind: 'user', id: String(accountId ?? 'unknown') },
        action: 'logout:Backchannel',
        resource: { type: 'Client', id: String(client?.clientId ?? 'unknown') },
        outcome,
        ...(err
          ? { reason: err?.name === 'OutboundRefused' ? 'destination_refused' : 'delivery_failed' }
          : {}),
        sourceIp: ctx?.ip,
        details: { user: accountId, attempt: 1, final: true },
      })
    }
  provider.on('backchannel.success', backchannel('success'))
  provider.on('backchannel.error', backchannel('failure'))
  provider.on('end_session.success', async (ctx: Ctx) => {
    const session = ctx.oidc?.session
    if (!session?.destroyed) return
    await recordRevokedSids(db, realm.id, [session.uid]).catch(() => undefined)
    void record({
      type: 'auth.logout',
      actor: { kind: 'user', id: session.accountId ?? 'unknown' },
      action: 'logout',
      outcome: 'success',
      sourceIp: ctx.ip,
    })
  })
  return provider
}
