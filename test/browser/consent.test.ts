import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import * as client from 'openid-client'
import { type Browser, chromium } from 'playwright-core'
import { createClient } from '../../src/iam/admin/clients.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { createUser } from '../../src/iam/admin/users.ts'
import { type Harness, OPERATOR, startHarness } from '../iam/harness.ts'
import { browserSkip, chromiumPath } from './chromium.ts'

const REDIRECT = 'https://thirdparty.example/cb'
const PASSWORD = 'correct horse battery staple'

/** Third-party clients get a consent page; denying returns access_denied to the client. */
describe('consent for third-party clients', { skip: browserSkip }, () => {
  let h: Harness
  let browser: Browser
  let config: client.Configuration
  before(async () => {
    h = await startHarness()
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    })
    await createRealm(h.iam.admin, OPERATOR, { id: 'acme', mfaPolicy: 'none' })
    await createUser(h.iam.admin, OPERATOR, 'acme', { username: 'dana', password: PASSWORD })
    await createClient(h.iam.admin, OPERATOR, 'acme', {
      clientId: 'partner',
      name: 'Partner App',
      authMethod: 'none',
      redirectUris: [REDIRECT],
      firstParty: false,
    })
    config = await h.discover('acme', 'partner', client.None(), { redirect_uris: [REDIRECT] })
  })
  after(async () => {
    await browser?.close()
    await h?.close()
  })

  async function attempt(decision: 'allow' | 'deny') {
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    let resolveCb: (u: string) => void
    const callback = new Promise<string>((r) => {
      resolveCb = r
    })
    await context.route('https://thirdparty.example/**', (route) => {
      resolveCb(route.request().url())
      return route.fulfill({ status: 200, body: 'ok' })
    })
    const page = await context.newPage()
    const verifier = client.randomPKCECodeVerifier()
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid api',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: 'st',
    })
    await page.goto(url.href)
    await page.fill('#username', 'dana')
    await page.fill('#password', PASSWORD)
    await page.click('button[type=submit]')
    assert.match((await page.textContent('main'))!, /Partner App/)
    await page.click(`button[value=${decision}]`)
    const result = new URL(await callback)
    await context.close()
    return { result, verifier }
  }

  test('deny returns access_denied; allow returns a code', async () => {
    const denied = await attempt('deny')
    assert.equal(denied.result.searchParams.get('error'), 'access_denied')
    const allowed = await attempt('allow')
    const tokens = await client.authorizationCodeGrant(config, allowed.result, {
      pkceCodeVerifier: allowed.verifier,
      expectedState: 'st',
    })
    assert.equal(
      (await h.iam.service.verifyAccessToken(tokens.access_token, 'acme')).client_id,
      'partner',
    )
  })
})
