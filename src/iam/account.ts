import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Authenticator, RequestInfo } from './authn.ts'
import { newRecoveryCode, RECOVERY_CODES } from './credentials/recovery.ts'
import { errorLine, esc, page, webauthnForm } from './html.ts'
import type { RealmProvider } from './providers.ts'

/** Changing the account's factors needs a login at most this old (seconds), as sensitive API calls do. */
export const ACCOUNT_REAUTH_SECONDS = 900

const PASSKEY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

export interface AccountRouteDeps {
  authn: Authenticator
  realmProvider(
    req: FastifyRequest,
    reply: FastifyReply,
  ): Promise<{ realm: string; rp: RealmProvider } | undefined>
  /** CSRF token bound to a realm and a key (here the login session). */
  csrf(realm: string, key: string): string
  csrfOk(realm: string, key: string, token: unknown): boolean
  /** Sends a page with the login pages' headers; `webauthn` allows the ceremony script. */
  html(reply: FastifyReply, body: string, status?: number, webauthn?: boolean): FastifyReply
  requestInfo(req: FastifyRequest): RequestInfo
}

type Account = { realm: string; userId: string; sessionUid: string }

/**
 * The account page, `/realms/{realm}/account/passkeys`: a signed-in user lists, adds and removes
 * their own passkeys. It is reached with the realm's login session (the OP's session cookie,
 * set by signing in to any application of the realm). Because it changes how the account signs
 * in, it needs a login at most 15 minutes old, with MFA when the user already has a second
 * factor; otherwise the user is asked to sign in again.
 */
export function accountRoutes(scope: FastifyInstance, deps: AccountRouteDeps) {
  const base = (realm: string) => `/realms/${realm}/account/passkeys`
  const csrfKey = (a: Account) => `account:${a.sessionUid}`
  const hidden = (a: Account) =>
    `<input type="hidden" name="csrf" value="${esc(deps.csrf(a.realm, csrfKey(a)))}">`

  async function account(req: FastifyRequest, reply: FastifyReply): Promise<Account | undefined> {
    const found = await deps.realmProvider(req, reply)
    if (!found) return undefined
    const { realm, rp } = found
    const session = await rp.provider.Session.get(rp.provider.createContext(req.raw, reply.raw))
    const userId = typeof session?.accountId === 'string' ? session.accountId : undefined
    const refuse = (message: string) => {
      deps.html(
        reply,
        page('Your passkeys', `<p class="error" role="alert">${esc(message)}</p>`),
        401,
      )
      return undefined
    }
    if (!userId || typeof session.uid !== 'string')
      return refuse(
        'Sign in to an application of this organisation first, then open this page again.',
      )
    const factors = await deps.authn.factors(realm, userId)
    const amr: unknown[] = Array.isArray(session.amr) ? session.amr : []
    const age = Math.floor(Date.now() / 1000) - Number(session.loginTs ?? 0)
    const hasFactor = factors.totp || factors.passkeys > 0
    if (!(age >= 0 && age <= ACCOUNT_REAUTH_SECONDS) || (hasFactor && !amr.includes('mfa')))
      return refuse(
        'For your security, sign in again (with your second factor) to manage your passkeys.',
      )
    return { realm, userId, sessionUid: session.uid }
  }

  async function listPage(a: Account, notice?: string, error?: string) {
    const passkeys = await deps.authn.passkeys.list(a.realm, a.userId)
    const options = await deps.authn.passkeys.beginRegistration(a.realm, a.userId, {
      session: a.sessionUid,
    })
    const items = passkeys
      .map(
        (k) => `<li><strong class="passkey-name">${esc(k.name)}</strong>
<br>${k.deviceType === 'multiDevice' ? 'Synced passkey' : 'Device-bound passkey'}, added ${esc(k.createdAt.slice(0, 10))}${k.lastUsedAt ? `, last used ${esc(k.lastUsedAt.slice(0, 10))}` : ''}
<form method="post" action="${base(a.realm)}/${esc(k.id)}/delete">${hidden(a)}
<button type="submit">Remove</button></form></li>`,
      )
      .join('')
    return page(
      'Your passkeys',
      `${notice ? `<p role="status" id="notice">${esc(notice)}</p>` : ''}${errorLine(error)}
<ul id="passkeys">${items || '<li>No passkeys yet.</li>'}</ul>
${
  options
    ? webauthnForm({
        mode: 'create',
        action: base(a.realm),
        hidden: hidden(a),
        options,
        button: 'Add a passkey',
        nameField: true,
      })
    : ''
}`,
    )
  }

  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const a = await account(req, reply)
    if (!a) return undefined
    const body = (req.body ?? {}) as Record<string, unknown>
    if (!deps.csrfOk(a.realm, csrfKey(a), body.csrf)) {
      deps.html(
        reply,
        page('Your passkeys', '<p>The form expired; go back and try again.</p>'),
        403,
      )
      return undefined
    }
    return { a, body }
  }

  scope.get('/realms/:realm/account/passkeys', async (req, reply) => {
    const a = await account(req, reply)
    if (!a) return
    const q = req.query as Record<string, unknown>
    const notice =
      q.done === 'added' ? 'Passkey added.' : q.done === 'removed' ? 'Passkey removed.' : undefined
    return deps.html(reply, await listPage(a, notice), 200, true)
  })

  scope.post('/realms/:realm/account/passkeys', async (req, reply) => {
    const g = await guard(req, reply)
    if (!g) return
    const { a, body } = g
    const codes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode)
    const r = await deps.authn.passkeys.finishRegistration(
      a.realm,
      a.userId,
      { session: a.sessionUid },
      String(body.credential ?? ''),
      body.name,
      deps.requestInfo(req),
      // A first second factor comes with recovery codes; later ones keep the existing codes.
      { codes, when: 'ifNone' },
    )
    if (!r.ok)
      return deps.html(
        reply,
        await listPage(a, undefined, 'The passkey could not be added.'),
        r.reason === 'locked' ? 401 : 400,
        true,
      )
    if (!r.recoveryCodesIssued) return reply.redirect(`${base(a.realm)}?done=added`, 303)
    return deps.html(
      reply,
      page(
        'Save your recovery codes',
        `<p>Passkey added. Each code signs you in once if you lose your passkey. They are shown only now.</p>
<ul class="codes" id="recovery-codes">${codes.map((c) => `<li>${esc(c)}</li>`).join('')}</ul>
<p><a href="${base(a.realm)}">Back to your passkeys</a></p>`,
      ),
    )
  })

  scope.post('/realms/:realm/account/passkeys/:id/delete', async (req, reply) => {
    const g = await guard(req, reply)
    if (!g) return
    const { a } = g
    const { id } = req.params as { id: string }
    const removed =
      PASSKEY_ID.test(id) &&
      (await deps.authn.passkeys.remove(a.realm, a.userId, id, deps.requestInfo(req)))
    if (!removed)
      return deps.html(reply, await listPage(a, undefined, 'No such passkey.'), 404, true)
    return reply.redirect(`${base(a.realm)}?done=removed`, 303)
  })
}
