import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import * as client from 'openid-client'
import { type Browser, chromium, type Page } from 'playwright-core'
import { createClient } from '../../src/iam/admin/clients.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { listSessions, revokeSession } from '../../src/iam/admin/sessions.ts'
import { createUser } from '../../src/iam/admin/users.ts'
import { totpCode } from '../../src/iam/credentials/totp.ts'
import { ACR_MFA } from '../../src/iam/provider.ts'
import { type Harness, OPERATOR, rejectsWith, startHarness } from '../iam/harness.ts'
import { browserSkip, chromiumPath } from './chromium.ts'

const REDIRECT = 'https://rp.example/cb'
const PASSWORD = 'correct horse battery staple'

async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
}

/** Opens a fresh browser context whose requests to the RP redirect URI are captured. */
async function rpPage(browser: Browser) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  let resolveCallback: (url: string) => void
  const callback = new Promise<string>((r) => {
    resolveCallback = r
  })
  await context.route('https://rp.example/**', (route) => {
    resolveCallback(route.request().url())
    return route.fulfill({ status: 200, body: 'ok' })
  })
  return { context, page: await context.newPage(), callback }
}

async function signIn(page: Page, username: string, password: string) {
  await page.fill('#username', username)
  await page.fill('#password', password)
  await page.click('button[type=submit]')
}

describe('browser login: code + PKCE, password + TOTP', { skip: browserSkip }, () => {
  let h: Harness
  let browser: Browser
  let config: client.Configuration
  before(async () => {
    h = await startHarness({ lockoutThreshold: 3 })
    browser = await launch()
    await createRealm(h.iam.admin, OPERATOR, { id: 'acme', mfaPolicy: 'everyone' })
    await createClient(h.iam.admin, OPERATOR, 'acme', {
      clientId: 'console',
      name: 'Console',
      authMethod: 'none',
      redirectUris: [REDIRECT],
      grantTypes: [
        'authorization_code',
        'refresh_token',
        'urn:ietf:params:oauth:grant-type:device_code',
      ],
    })
    await createUser(h.iam.admin, OPERATOR, 'acme', { username: 'alice', password: PASSWORD })
    await createUser(h.iam.admin, OPERATOR, 'acme', { username: 'mallory', password: PASSWORD })
    config = await h.discover('acme', 'console', client.None(), { redirect_uris: [REDIRECT] })
  })
  after(async () => {
    await browser?.close()
    await h?.close()
  })

  async function authorize(page: Page) {
    const verifier = client.randomPKCECodeVerifier()
    const state = client.randomState()
    const nonce = client.randomNonce()
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid profile api',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    })
    await page.goto(url.href)
    return { verifier, state, nonce }
  }

  let firstTokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>
  let recoveryCodes: string[] = []
  let deviceTokens: Awaited<ReturnType<typeof client.pollDeviceAuthorizationGrant>>

  test('first login enrols TOTP, then code + PKCE yields MFA tokens', async () => {
    const { page, context, callback } = await rpPage(browser)
    const checks = await authorize(page)
    await signIn(page, 'alice', PASSWORD)
    const secret = (await page.textContent('#totp-secret'))!.trim()
    await page.fill('#code', totpCode(secret))
    await page.click('button[type=submit]')
    recoveryCodes = await page.locator('#recovery-codes li').allTextContents()
    assert.equal(recoveryCodes.length, 10)
    await page.click('button[type=submit]')
    const cb = new URL(await callback)
    firstTokens = await client.authorizationCodeGrant(config, cb, {
      pkceCodeVerifier: checks.verifier,
      expectedState: checks.state,
      expectedNonce: checks.nonce,
    })
    const at = await h.iam.service.verifyAccessToken(firstTokens.access_token, 'acme')
    assert.deepEqual(at.amr.sort(), ['mfa', 'otp', 'pwd'])
    assert.equal(at.acr, ACR_MFA)
    assert.ok(at.auth_time && at.sid)
    assert.deepEqual(at.scope, { kind: 'org' })
    assert.equal(at.service, false)
    const id = firstTokens.claims()!
    assert.ok(id.exp - id.iat <= 300)
    assert.ok(firstTokens.refresh_token)
    await context.close()
  })

  test('the next login asks for a code; a recovery code works once', async () => {
    const { page, context, callback } = await rpPage(browser)
    const checks = await authorize(page)
    await signIn(page, 'alice', PASSWORD)
    await page.fill('#code', recoveryCodes[0]!)
    await page.click('button[type=submit]')
    const tokens = await client.authorizationCodeGrant(config, new URL(await callback), {
      pkceCodeVerifier: checks.verifier,
      expectedState: checks.state,
      expectedNonce: checks.nonce,
    })
    assert.ok(tokens.access_token)
    await context.close()

    const second = await rpPage(browser)
    await authorize(second.page)
    await signIn(second.page, 'alice', PASSWORD)
    await second.page.fill('#code', recoveryCodes[0]!)
    await second.page.click('button[type=submit]')
    assert.match((await second.page.textContent('.error'))!, /not valid/)
    await second.context.close()
  })

  test('refresh rotates; reusing an old refresh token revokes the whole grant', async () => {
    const old = firstTokens.refresh_token!
    const rotated = await client.refreshTokenGrant(config, old)
    assert.notEqual(rotated.refresh_token, old)
    const claims = await h.iam.service.verifyAccessToken(rotated.access_token, 'acme')
    assert.deepEqual(claims.amr.sort(), ['mfa', 'otp', 'pwd'])
    await rejectsWith(client.refreshTokenGrant(config, old), 'invalid_grant')
    await rejectsWith(client.refreshTokenGrant(config, rotated.refresh_token!), 'invalid_grant')
    assert.ok(
      h.events.events.some((e) => e.type === 'token.revoked' && e.reason === 'refresh_token_reuse'),
    )
  })

  test('a form post without the CSRF token is refused', async () => {
    const { page, context } = await rpPage(browser)
    await authorize(page)
    const action = await page.getAttribute('form', 'action')
    const res = await page.request.post(new URL(action!, page.url()).href, {
      form: { username: 'alice', password: PASSWORD },
    })
    assert.equal(res.status(), 403)
    await context.close()
  })

  test('lockout after N failures, even with the right password afterwards', async () => {
    const { page, context } = await rpPage(browser)
    await authorize(page)
    for (let i = 0; i < 3; i++) {
      await signIn(page, 'mallory', 'wrong password guess')
      assert.match((await page.textContent('.error'))!, /Invalid user name or password/)
    }
    await signIn(page, 'mallory', PASSWORD)
    assert.match((await page.textContent('.error'))!, /locked/)
    assert.ok(h.events.events.some((e) => e.type === 'auth.lockout'))
    const failures = h.events.events.filter(
      (e) => e.type === 'auth.login' && e.outcome === 'failure',
    )
    assert.ok(failures.length >= 3)
    assert.ok(!JSON.stringify(h.events.events).includes('wrong password guess'))
    await context.close()
  })

  test('device authorization grant', async () => {
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid api' })
    const { page, context } = await rpPage(browser)
    await page.goto(device.verification_uri_complete!)
    await page.click('#confirm')
    await signIn(page, 'alice', PASSWORD)
    await page.fill('#code', recoveryCodes[1]!)
    await page.click('button[type=submit]')
    await page.waitForSelector('text=return to your device')
    const tokens = await client.pollDeviceAuthorizationGrant(config, device)
    const claims = await h.iam.service.verifyAccessToken(tokens.access_token, 'acme')
    assert.equal(claims.tid, 'acme')
    deviceTokens = tokens
    await context.close()
  })

  test('an admin revokes the session: its access and refresh tokens stop working', async () => {
    const claims = await h.iam.service.verifyAccessToken(deviceTokens.access_token, 'acme')
    const sessions = await listSessions(h.iam.admin, 'acme', { userId: claims.sub })
    const mine = sessions.find((s) => s.id === claims.sid)
    assert.ok(mine, 'the session is listed')
    assert.ok(mine.amr.includes('mfa'))
    await revokeSession(h.iam.admin, OPERATOR, 'acme', mine.id)
    assert.equal(await h.iam.service.isSessionRevoked('acme', mine.id), true)
    await assert.rejects(
      h.iam.service.verifyAccessToken(deviceTokens.access_token, 'acme'),
      /session revoked/,
    )
    if (deviceTokens.refresh_token)
      await rejectsWith(
        client.refreshTokenGrant(config, deviceTokens.refresh_token),
        'invalid_grant',
      )
    assert.ok(h.events.events.some((e) => e.type === 'iam.session.revoked'))
  })

  test('RP-initiated logout ends the session for the gateway', async () => {
    const { page, context, callback } = await rpPage(browser)
    const checks = await authorize(page)
    await signIn(page, 'alice', PASSWORD)
    await page.fill('#code', recoveryCodes[2]!)
    await page.click('button[type=submit]')
    const tokens = await client.authorizationCodeGrant(config, new URL(await callback), {
      pkceCodeVerifier: checks.verifier,
      expectedState: checks.state,
      expectedNonce: checks.nonce,
    })
    // Let the redirect to the RP finish before navigating again.
    await page.waitForURL('https://rp.example/**')
    const logout = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token! })
    await page.goto(logout.href)
    await page.click('button[name=logout]')
    await page.waitForSelector('text=You are signed out')
    await assert.rejects(
      h.iam.service.verifyAccessToken(tokens.access_token, 'acme'),
      /session revoked/,
    )
    await rejectsWith(client.refreshTokenGrant(config, tokens.refresh_token!), 'invalid_grant')
    await context.close()
  })
})
