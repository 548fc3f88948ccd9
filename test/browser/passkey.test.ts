import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import * as client from 'openid-client'
import {
  type Browser,
  type BrowserContext,
  type CDPSession,
  chromium,
  type Page,
} from 'playwright-core'
import { createClient } from '../../src/iam/admin/clients.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { createUser } from '../../src/iam/admin/users.ts'
import { ACR_MFA } from '../../src/iam/issuer.ts'
import { type Harness, OPERATOR, startHarness } from '../iam/harness.ts'
import { browserSkip, chromiumPath } from './chromium.ts'

const REDIRECT = 'https://rp.example/cb'
const PASSWORD = 'correct horse battery staple'

/**
 * Passkeys in a real browser: headless Chromium with a virtual authenticator from the Chrome
 * DevTools Protocol (CTAP2, internal transport, user verification) runs the page's own script
 * against the server, on `localhost` (browsers refuse an IP address as RP ID).
 */
describe('browser: passkey enrolment at first login, then password + passkey', {
  skip: browserSkip,
}, () => {
  let h: Harness
  let browser: Browser
  let context: BrowserContext
  let page: Page
  let cdp: CDPSession
  let config: client.Configuration
  const callbacks: ((url: string) => void)[] = []
  const cspErrors: string[] = []

  before(async () => {
    h = await startHarness({}, { host: 'localhost' })
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    })
    await createRealm(h.iam.admin, OPERATOR, { id: 'acme', mfaPolicy: 'everyone' })
    await createClient(h.iam.admin, OPERATOR, 'acme', {
      clientId: 'console',
      name: 'Console',
      authMethod: 'none',
      redirectUris: [REDIRECT],
    })
    await createUser(h.iam.admin, OPERATOR, 'acme', { username: 'alice', password: PASSWORD })
    config = await h.discover('acme', 'console', client.None(), { redirect_uris: [REDIRECT] })
    context = await browser.newContext({ ignoreHTTPSErrors: true })
    await context.route('https://rp.example/**', (route) => {
      callbacks.shift()?.(route.request().url())
      return route.fulfill({ status: 200, body: 'ok' })
    })
    page = await context.newPage()
    page.on('console', (m) => {
      // A CSP violation (a refused script, style or form) is reported on the console.
      if (/Refused to .*Content Security Policy/i.test(m.text())) cspErrors.push(m.text())
    })
    cdp = await context.newCDPSession(page)
    await cdp.send('WebAuthn.enable')
  })
  after(async () => {
    await browser?.close()
    await h?.close()
  })

  async function addAuthenticator() {
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    })
    return authenticatorId
  }

  /** Starts code + PKCE (always asking for a fresh login); returns the checks and the callback. */
  async function authorize() {
    const verifier = client.randomPKCECodeVerifier()
    const state = client.randomState()
    const nonce = client.randomNonce()
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid api',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      prompt: 'login',
    })
    const callback = new Promise<string>((resolve) => callbacks.push(resolve))
    await page.goto(url.href)
    await page.fill('#username', 'alice')
    await page.fill('#password', PASSWORD)
    await page.click('button[type=submit]')
    return {
      async tokens() {
        const url = new URL(await callback)
        // Let the browser finish landing on the callback, so the next navigation cannot race it.
        await page.waitForURL((u) => u.origin === 'https://rp.example')
        const tokens = await client.authorizationCodeGrant(config, url, {
          pkceCodeVerifier: verifier,
          expectedState: state,
          expectedNonce: nonce,
        })
        return h.iam.service.verifyAccessToken(tokens.access_token, 'acme')
      },
    }
  }

  let firstAuthenticator: string

  test('first login: the user chooses a passkey; the token says pwd + hwk + mfa', async () => {
    firstAuthenticator = await addAuthenticator()
    const flow = await authorize()
    await page.waitForSelector('#webauthn-start')
    await page.fill('#passkey-name', 'laptop')
    await page.click('#webauthn-start')
    await page.waitForSelector('#recovery-codes li')
    assert.equal(await page.locator('#recovery-codes li').count(), 10)
    await page.click('button[type=submit]')
    const at = await flow.tokens()
    assert.deepEqual([...at.amr].sort(), ['hwk', 'mfa', 'pwd'])
    assert.equal(at.acr, ACR_MFA)
    const { credentials } = await cdp.send('WebAuthn.getCredentials', {
      authenticatorId: firstAuthenticator,
    })
    assert.equal(credentials.length, 1)
    const stored = await h.t.db.query<{ credential_id: string; name: string }>(
      'SELECT credential_id, name FROM iam.webauthn_credentials',
    )
    assert.deepEqual(
      stored.rows.map((r) => ({ ...r })),
      // CDP reports the id in base64, the server keeps base64url.
      [
        {
          credential_id: Buffer.from(credentials[0]!.credentialId, 'base64').toString('base64url'),
          name: 'laptop',
        },
      ],
    )
    assert.ok(
      h.events.events.some(
        (e) => e.type === 'auth.mfa.enrolled' && e.action === 'mfa:EnrollWebAuthn',
      ),
    )
  })

  test('the next login: password, then the passkey (the page allows only its own script)', async () => {
    const pages: string[] = []
    const onResponse = async (r: import('playwright-core').Response) => {
      if (r.request().method() === 'GET' && /\/interaction\/[^/]+$/.test(new URL(r.url()).pathname))
        pages.push((await r.allHeaders())['content-security-policy'] ?? '')
    }
    page.on('response', onResponse)
    const flow = await authorize()
    await page.waitForSelector('#webauthn-start')
    page.off('response', onResponse)
    // The login page runs no script; the second step allows exactly the ceremony script.
    const [loginCsp, mfaCsp] = pages
    assert.doesNotMatch(loginCsp!, /script-src/)
    assert.match(mfaCsp!, /script-src 'sha256-[A-Za-z0-9+/=]+';/)
    assert.doesNotMatch(mfaCsp!, /unsafe-inline|unsafe-eval|nonce/)
    await page.click('#webauthn-start')
    const at = await flow.tokens()
    assert.deepEqual([...at.amr].sort(), ['hwk', 'mfa', 'pwd'])
    assert.equal(at.acr, ACR_MFA)
    const mfa = h.events.events.filter((e) => e.type === 'auth.mfa' && e.outcome === 'success')
    assert.equal(mfa.at(-1)?.details?.method, 'webauthn')
    const { rows } = await h.t.db.query<{ counter: number; last_used_at: Date | null }>(
      'SELECT counter, last_used_at FROM iam.webauthn_credentials',
    )
    assert.ok(rows[0]!.last_used_at)
    assert.deepEqual(cspErrors, [])
  })

  test('the account page: add a second passkey, remove the first, sign in with the second', async () => {
    await page.goto(`${h.base.origin}/realms/acme/account/passkeys`)
    assert.deepEqual(await page.locator('.passkey-name').allTextContents(), ['laptop'])
    // A second authenticator (the first would refuse: it already holds a credential of alice).
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: firstAuthenticator })
    await addAuthenticator()
    await page.fill('#passkey-name', 'backup key')
    await page.click('#webauthn-start')
    await page.waitForSelector('#notice')
    assert.deepEqual(await page.locator('.passkey-name').allTextContents(), [
      'laptop',
      'backup key',
    ])
    await page.locator('#passkeys li', { hasText: 'laptop' }).locator('button').click()
    await page.waitForSelector('#notice')
    assert.deepEqual(await page.locator('.passkey-name').allTextContents(), ['backup key'])
    assert.ok(h.events.events.some((e) => e.type === 'auth.mfa.removed'))
    const flow = await authorize()
    await page.click('#webauthn-start')
    const at = await flow.tokens()
    assert.deepEqual([...at.amr].sort(), ['hwk', 'mfa', 'pwd'])
  })

  test('the account page needs the realm session; another browser without one is refused', async () => {
    const other = await browser.newContext({ ignoreHTTPSErrors: true })
    const p = await other.newPage()
    const r = await p.goto(`${h.base.origin}/realms/acme/account/passkeys`)
    assert.equal(r?.status(), 401)
    assert.equal(await p.locator('#webauthn-start').count(), 0)
    // A forged post without the session (and its CSRF token) changes nothing.
    const post = await p.request.post(`${h.base.origin}/realms/acme/account/passkeys`, {
      form: { csrf: 'x', credential: '{}' },
    })
    assert.equal(post.status(), 401)
    await other.close()
    assert.equal((await h.t.db.query('SELECT 1 FROM iam.webauthn_credentials')).rows.length, 1)
  })
})
