import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'
import formbody from '@fastify/formbody'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Db } from '../core/db/index.ts'
import { hijackWithHeaders } from '../server/hijack.ts'
import { accountRoutes } from './account.ts'
import { DbAdapter } from './adapter.ts'
import type { Authenticator, RequestInfo } from './authn.ts'
import { newRecoveryCode, RECOVERY_CODES } from './credentials/recovery.ts'
import { totpUri } from './credentials/totp.ts'
import { type Federation, federationCallbackRoute } from './federation.ts'
import {
  errorLine,
  esc,
  page,
  STYLESHEET,
  STYLESHEET_PATH,
  WEBAUTHN_SCRIPT_SRC,
  webauthnForm,
} from './html.ts'
import { ACR_FED, ACR_MFA, ACR_PWD } from './issuer.ts'
import { publishedKeys } from './keys.ts'
import type { ProviderCache, RealmProvider } from './providers.ts'

export interface IamRouteDeps {
  db: Db
  kek: Buffer
  providers: ProviderCache
  authn: Authenticator
  federation?: Federation
}

type Progress = {
  userId: string
  step: 'mfa' | 'enroll' | 'enrolled'
  factorId?: string
  amr?: string[]
}

const REALM = /^[a-z][a-z0-9-]{1,62}$/
const PROGRESS_TTL = 900

function requestInfo(req: FastifyRequest): RequestInfo {
  const cid = req.headers['x-correlation-id']
  return {
    ip: req.ip,
    userAgent: String(req.headers['user-agent'] ?? '').slice(0, 256),
    correlationId: typeof cid === 'string' ? cid : req.id,
  }
}

/**
 * The OIDC surface of every realm, `/realms/{realm}/…`, plus the login, MFA and consent pages
 * and the account page (passkeys). Pages carry no script but the fixed WebAuthn one, allowed by
 * its hash; every form post carries a token bound to the interaction or session (CSRF), and the
 * interaction cookie itself is SameSite=Lax and path-bound to the interaction.
 */
export async function iamRoutes(app: FastifyInstance, deps: IamRouteDeps) {
  const csrfKey = Buffer.from(hkdfSync('sha256', deps.kek, 'csrf', 'dflare iam csrf v1', 32))
  const csrf = (realm: string, uid: string) =>
    createHmac('sha256', csrfKey).update(`${realm}/${uid}`).digest('base64url')
  const csrfOk = (realm: string, uid: string, token: unknown) => {
    const expected = Buffer.from(csrf(realm, uid))
    const given = Buffer.from(typeof token === 'string' ? token : '')
    return given.length === expected.length && timingSafeEqual(given, expected)
  }
  const progressStore = (realm: string) => new DbAdapter(deps.db, realm, 'LoginProgress')

  async function realmProvider(req: FastifyRequest, reply: FastifyReply) {
    const { realm } = req.params as { realm: string }
    const rp = REALM.test(realm) ? await deps.providers.get(realm) : undefined
    if (!rp) {
      reply.code(404).type('text/html').send(page('Not found', '<p>No such realm.</p>'))
      return undefined
    }
    return { realm, rp }
  }

  app.get(STYLESHEET_PATH, async (_req, reply) => {
    reply.type('text/css').header('cache-control', 'public, max-age=3600').send(STYLESHEET)
  })

  // JWKS: the current, next and still-valid previous public keys (oidc-provider only knows the
  // signing key, so it would publish less).
  app.get('/realms/:realm/jwks', async (req, reply) => {
    const { realm } = req.params as { realm: string }
    const keys = REALM.test(realm) ? await publishedKeys(deps.db, realm) : []
    if (keys.length === 0) return reply.code(404).send({ error: 'not_found' })
    reply
      .type('application/jwk-set+json')
      .header('cache-control', 'public, max-age=300')
      .send({ keys })
  })

  // Everything else under /realms/{realm}/ is the realm's oidc-provider, fed the raw request.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null))
    const handler = async (req: FastifyRequest, reply: FastifyReply) => {
      const found = await realmProvider(req, reply)
      if (!found) return
      hijackWithHeaders(reply)
      const raw = req.raw as typeof req.raw & { originalUrl?: string }
      const prefix = `/realms/${found.realm}`
      raw.originalUrl = raw.url
      raw.url = raw.url!.slice(prefix.length) || '/'
      found.rp.handle(raw, reply.raw)
    }
    scope.all('/realms/:realm/*', handler)
  })

  await app.register(async (scope) => {
    await scope.register(formbody, { bodyLimit: 16_384 })

    async function interaction(req: FastifyRequest, reply: FastifyReply) {
      const found = await realmProvider(req, reply)
      if (!found) return undefined
      const { uid } = req.params as { uid: string }
      try {
        const details = await found.rp.provider.interactionDetails(req.raw, reply.raw)
        if (details.uid !== uid) throw new Error('interaction mismatch')
        return { ...found, uid, details }
      } catch {
        reply
          .code(400)
          .type('text/html')
          .send(page('Sign-in expired', '<p>This sign-in request expired. Start again.</p>'))
        return undefined
      }
    }

    // Only pages that may run a WebAuthn ceremony (second step, enrolment) allow a script, and
    // only that fixed one (by hash).
    const html = (reply: FastifyReply, body: string, status = 200, webauthn = false) =>
      reply
        .code(status)
        .type('text/html')
        .header('cache-control', 'no-store')
        .header('x-frame-options', 'DENY')
        .header(
          'content-security-policy',
          `default-src 'none'; style-src 'self';${webauthn ? ` script-src ${WEBAUTHN_SCRIPT_SRC};` : ''} form-action 'self' https: http://127.0.0.1:* http://[::1]:* http://localhost:*; frame-ancestors 'none'; base-uri 'none'`,
        )
        .send(body)
    const ceremony = (reply: FastifyReply, body: string, status = 200) =>
      html(reply, body, status, true)

    const action = (realm: string, uid: string, step: string) =>
      `/realms/${realm}/interaction/${uid}/${step}`
    const hidden = (realm: string, uid: string) =>
      `<input type="hidden" name="csrf" value="${esc(csrf(realm, uid))}">`

    async function loginPage(realm: string, uid: string, error?: string, username = '') {
      const idps = deps.federation ? await deps.federation.providers(realm) : []
      const sso = idps.length
        ? `<form method="post" action="${action(realm, uid, 'discover')}">${hidden(realm, uid)}
<label for="email">Or sign in with your organisation’s account</label>
<input id="email" name="email" type="text" autocomplete="email" placeholder="you@company.example">
<button type="submit" id="sso">Continue with SSO</button></form>`
        : ''
      return page(
        `Sign in to ${realm}`,
        `${errorLine(error)}
<form method="post" action="${action(realm, uid, 'login')}">${hidden(realm, uid)}
<label for="username">User name</label><input id="username" name="username" type="text" autocomplete="username" value="${esc(username)}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form>${sso}`,
      )
    }

    /** The second step: a passkey (when the user has one) or a TOTP or recovery code. */
    async function mfaPage(realm: string, uid: string, userId: string, error?: string) {
      const factors = await deps.authn.factors(realm, userId)
      const options =
        factors.passkeys > 0
          ? await deps.authn.passkeys.beginAuthentication(realm, userId, { interaction: uid })
          : undefined
      const passkey = options
        ? `${webauthnForm({
            mode: 'get',
            action: action(realm, uid, 'passkey'),
            hidden: hidden(realm, uid),
            options,
            button: 'Use your passkey',
          })}<p>Or enter a code.</p>`
        : ''
      const label = factors.totp
        ? 'Code from your authenticator app, or a recovery code'
        : 'Recovery code'
      return page(
        'Two-step verification',
        `${errorLine(error)}${passkey}
<form method="post" action="${action(realm, uid, 'mfa')}">${hidden(realm, uid)}
<label for="code">${label}</label>
<input id="code" name="code" type="text" inputmode="${factors.totp ? 'numeric' : 'text'}" autocomplete="one-time-code" required${options ? '' : ' autofocus'}>
<button type="submit">Verify</button></form>`,
      )
    }

    /** Forced enrolment: an authenticator app (TOTP) or a passkey, the user's choice. */
    async function enrollPage(realm: string, uid: string, p: Progress, error?: string) {
      const secret = await deps.authn.pendingTotpSecret(realm, p.userId, p.factorId!)
      if (!secret) return await loginPage(realm, uid, 'Enrolment expired; sign in again.')
      const options = await deps.authn.passkeys.beginRegistration(realm, p.userId, {
        interaction: uid,
      })
      if (!options) return await loginPage(realm, uid, 'Enrolment expired; sign in again.')
      return page(
        'Set up two-step verification',
        `${errorLine(error)}<p>Your account requires a second factor: a passkey or an authenticator app.</p>
<h2>Passkey</h2>
<p>A security key, your phone, or this device’s screen lock.</p>
${webauthnForm({
  mode: 'create',
  action: action(realm, uid, 'enroll-passkey'),
  hidden: hidden(realm, uid),
  options,
  button: 'Create a passkey',
  nameField: true,
})}
<h2>Authenticator app</h2>
<p>Add this key to the app:</p>
<p class="secret" id="totp-secret">${esc(secret)}</p>
<p class="secret" id="totp-uri">${esc(totpUri(secret, `Dflare ${realm}`, p.userId))}</p>
<form method="post" action="${action(realm, uid, 'enroll')}">${hidden(realm, uid)}
<label for="code">Code shown by the app</label>
<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required autofocus>
<button type="submit">Confirm</button></form>`,
      )
    }

    function recoveryCodesPage(realm: string, uid: string, codes: readonly string[]) {
      return page(
        'Save your recovery codes',
        `<p>Each code signs you in once if you lose your authenticator. They are shown only now.</p>
<ul class="codes" id="recovery-codes">${codes.map((c) => `<li>${esc(c)}</li>`).join('')}</ul>
<form method="post" action="${action(realm, uid, 'continue')}">${hidden(realm, uid)}
<button type="submit">I saved them, continue</button></form>`,
      )
    }

    async function finishLogin(
      rp: RealmProvider,
      req: FastifyRequest,
      reply: FastifyReply,
      userId: string,
      amr: string[],
    ) {
      hijackWithHeaders(reply)
      await rp.provider.interactionFinished(
        req.raw,
        reply.raw,
        {
          login: {
            accountId: userId,
            amr,
            acr: amr.includes('mfa') ? ACR_MFA : amr.includes('fed') ? ACR_FED : ACR_PWD,
            remember: false,
          },
        },
        { mergeWithLastSubmission: false },
      )
    }

    async function consent(
      rp: RealmProvider,
      req: FastifyRequest,
      reply: FastifyReply,
      // biome-ignore lint/suspicious/noExplicitAny: oidc-provider interaction details are untyped
      d: any,
    ) {
      const { Grant } = rp.provider
      const details = d.prompt.details ?? {}
      const grant = d.grantId
        ? await Grant.find(d.grantId)
        : new Grant({ accountId: d.session.accountId, clientId: d.params.client_id })
      if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '))
      if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims)
      for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {}))
        grant.addResourceScope(indicator, (scopes as string[]).join(' '))
      const grantId = await grant.save()
      hijackWithHeaders(reply)
      await rp.provider.interactionFinished(
        req.raw,
        reply.raw,
        { consent: d.grantId ? {} : { grantId } },
        { mergeWithLastSubmission: true },
      )
    }

    scope.get('/realms/:realm/interaction/:uid', async (req, reply) => {
      const it = await interaction(req, reply)
      if (!it) return
      const { realm, uid, rp, details } = it
      if (details.prompt.name === 'login') {
        const p = (await progressStore(realm).find(uid)) as Progress | undefined
        if (p?.step === 'mfa') return ceremony(reply, await mfaPage(realm, uid, p.userId))
        if (p?.step === 'enroll') return ceremony(reply, await enrollPage(realm, uid, p))
        return html(reply, await loginPage(realm, uid))
      }
      if (details.prompt.name === 'consent') {
        const client = await rp.provider.Client.find(details.params.client_id)
        if (client?.first_party !== false) return consent(rp, req, reply, details)
        return html(
          reply,
          page(
            'Allow access',
            `<p><strong>${esc(client.clientName ?? client.clientId)}</strong> asks to access your
account (${esc(details.params.scope)}).</p>
<form method="post" action="${action(realm, uid, 'consent')}">${hidden(realm, uid)}
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></form>`,
          ),
        )
      }
      return html(reply, page('Sign-in error', '<p>Unsupported step.</p>'), 400)
    })

    const guard = async (req: FastifyRequest, reply: FastifyReply) => {
      const it = await interaction(req, reply)
      if (!it) return undefined
      const body = (req.body ?? {}) as Record<string, unknown>
      if (!csrfOk(it.realm, it.uid, body.csrf)) {
        html(reply, page('Sign-in error', '<p>The form expired; go back and try again.</p>'), 403)
        return undefined
      }
      return { ...it, body }
    }

    /** The login's progress when it has reached `step`; else "Sign in first." and undefined. */
    const progressAt = async (
      reply: FastifyReply,
      realm: string,
      uid: string,
      step: Progress['step'],
    ) => {
      const store = progressStore(realm)
      const p = (await store.find(uid)) as Progress | undefined
      if (p?.step === step) return { store, p }
      html(reply, await loginPage(realm, uid, 'Sign in first.'), 400)
      return undefined
    }

    /** A posted form (CSRF checked) of a sign-in that has reached `step`; else its error page. */
    const formAt = async (req: FastifyRequest, reply: FastifyReply, step: Progress['step']) => {
      const it = await guard(req, reply)
      if (!it) return undefined
      const at = await progressAt(reply, it.realm, it.uid, step)
      return at && { ...it, ...at }
    }

    /** The account locked during this sign-in: the sign-in ends. */
    const lockedOut = async (
      reply: FastifyReply,
      realm: string,
      uid: string,
      store: ReturnType<typeof progressStore>,
    ) => {
      await store.destroy(uid)
      return html(
        reply,
        await loginPage(realm, uid, 'This account is locked; try again later.'),
        401,
      )
    }

    scope.post('/realms/:realm/interaction/:uid/login', async (req, reply) => {
      const it = await guard(req, reply)
      if (!it) return
      const { realm, uid, rp, body, details } = it
      if (details.prompt.name !== 'login') return html(reply, page('Sign-in error', ''), 400)
      const username = String(body.username ?? '').slice(0, 256)
      const result = await deps.authn.password(
        realm,
        username,
        String(body.password ?? ''),
        requestInfo(req),
      )
      if (!result.ok) {
        const message =
          result.reason === 'throttled'
            ? 'Too many failed attempts from your network; try again later.'
            : result.reason === 'locked'
              ? 'This account is locked; try again later or contact your administrator.'
              : 'Invalid user name or password.'
        return html(reply, await loginPage(realm, uid, message, username), 401)
      }
      if (result.mfa === 'none') return finishLogin(rp, req, reply, result.userId, ['pwd'])
      const store = progressStore(realm)
      if (result.mfa === 'verify') {
        await store.upsert(uid, { userId: result.userId, step: 'mfa' }, PROGRESS_TTL)
      } else {
        const { factorId } = await deps.authn.beginTotp(realm, result.userId)
        await store.upsert(uid, { userId: result.userId, step: 'enroll', factorId }, PROGRESS_TTL)
      }
      return reply.redirect(`/realms/${realm}/interaction/${uid}`, 303)
    })

    scope.post('/realms/:realm/interaction/:uid/mfa', async (req, reply) => {
      const form = await formAt(req, reply, 'mfa')
      if (!form) return
      const { realm, uid, rp, body, store, p } = form
      const r = await deps.authn.secondFactor(
        realm,
        p.userId,
        String(body.code ?? ''),
        requestInfo(req),
      )
      if (!r.ok) {
        if (r.reason === 'locked') return lockedOut(reply, realm, uid, store)
        return ceremony(reply, await mfaPage(realm, uid, p.userId, 'That code is not valid.'), 401)
      }
      await store.destroy(uid)
      return finishLogin(rp, req, reply, p.userId, ['pwd', ...r.amr, 'mfa'])
    })

    // The second step with a passkey: amr gets hwk (hardware-bound) or swk (synced) and mfa.
    scope.post('/realms/:realm/interaction/:uid/passkey', async (req, reply) => {
      const form = await formAt(req, reply, 'mfa')
      if (!form) return
      const { realm, uid, rp, body, store, p } = form
      const r = await deps.authn.passkeys.finishAuthentication(
        realm,
        p.userId,
        { interaction: uid },
        String(body.credential ?? ''),
        requestInfo(req),
      )
      if (!r.ok) {
        if (r.reason === 'locked') return lockedOut(reply, realm, uid, store)
        return ceremony(
          reply,
          await mfaPage(realm, uid, p.userId, 'That passkey could not be verified.'),
          401,
        )
      }
      await store.destroy(uid)
      return finishLogin(rp, req, reply, p.userId, ['pwd', r.amr, 'mfa'])
    })

    // Forced enrolment with a passkey instead of an authenticator app.
    scope.post('/realms/:realm/interaction/:uid/enroll-passkey', async (req, reply) => {
      const form = await formAt(req, reply, 'enroll')
      if (!form) return
      const { realm, uid, body, store, p } = form
      const codes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode)
      const r = await deps.authn.passkeys.finishRegistration(
        realm,
        p.userId,
        { interaction: uid },
        String(body.credential ?? ''),
        body.name,
        requestInfo(req),
        { codes, when: 'always' },
      )
      if (!r.ok) {
        if (r.reason === 'locked') return lockedOut(reply, realm, uid, store)
        return ceremony(
          reply,
          await enrollPage(realm, uid, p, 'The passkey could not be registered.'),
          401,
        )
      }
      await store.upsert(uid, { ...p, step: 'enrolled', amr: ['pwd', r.amr, 'mfa'] }, PROGRESS_TTL)
      return html(reply, recoveryCodesPage(realm, uid, codes))
    })

    scope.post('/realms/:realm/interaction/:uid/enroll', async (req, reply) => {
      const form = await formAt(req, reply, 'enroll')
      if (!form) return
      const { realm, uid, body, store, p } = form
      const codes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode)
      const ok = await deps.authn.confirmTotp(
        realm,
        p.userId,
        p.factorId!,
        String(body.code ?? ''),
        requestInfo(req),
        codes,
      )
      if (!ok)
        return ceremony(reply, await enrollPage(realm, uid, p, 'That code is not valid.'), 401)
      await store.upsert(uid, { ...p, step: 'enrolled', amr: ['pwd', 'otp', 'mfa'] }, PROGRESS_TTL)
      return html(reply, recoveryCodesPage(realm, uid, codes))
    })

    scope.post('/realms/:realm/interaction/:uid/continue', async (req, reply) => {
      const form = await formAt(req, reply, 'enrolled')
      if (!form) return
      const { uid, rp, store, p } = form
      await store.destroy(uid)
      return finishLogin(rp, req, reply, p.userId, p.amr ?? ['pwd', 'otp', 'mfa'])
    })

    accountRoutes(scope, {
      authn: deps.authn,
      realmProvider,
      csrf,
      csrfOk,
      html,
      requestInfo,
    })

    if (deps.federation) {
      const fed = deps.federation
      federationCallbackRoute(scope, fed, { html, page })

      // Home-realm discovery: the email's verified domain picks the upstream IdP.
      scope.post('/realms/:realm/interaction/:uid/discover', async (req, reply) => {
        const it = await guard(req, reply)
        if (!it) return
        const { realm, uid, body } = it
        const email = String(body.email ?? '')
          .trim()
          .slice(0, 320)
        const idp = await fed.forEmail(realm, email)
        if (!idp)
          return html(
            reply,
            await loginPage(realm, uid, 'No organisation sign-in is set up for that email.'),
            400,
          )
        return reply.redirect((await fed.begin(realm, uid, idp, email)).href, 303)
      })

      scope.get('/realms/:realm/interaction/:uid/federated', async (req, reply) => {
        const it = await interaction(req, reply)
        if (!it) return
        const { realm, uid, rp } = it
        const state = String((req.query as Record<string, unknown>).state ?? '')
        const done = await fed.complete(realm, uid, state)
        if (!done)
          return html(reply, await loginPage(realm, uid, 'Organisation sign-in failed.'), 400)
        return finishLogin(rp, req, reply, done.userId, done.amr)
      })
    }

    scope.post('/realms/:realm/interaction/:uid/consent', async (req, reply) => {
      const it = await guard(req, reply)
      if (!it) return
      const { rp, body, details } = it
      if (details.prompt.name !== 'consent') return html(reply, page('Sign-in error', ''), 400)
      if (body.decision === 'allow') return consent(rp, req, reply, details)
      hijackWithHeaders(reply)
      await rp.provider.interactionFinished(
        req.raw,
        reply.raw,
        { error: 'access_denied', error_description: 'the user denied access' },
        { mergeWithLastSubmission: false },
      )
    })
  })
}
