import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import * as client from 'openid-client'
import { type Browser, chromium } from 'playwright-core'
import { createClient } from '../../src/iam/admin/clients.ts'
import { addMember, createGroup, listGroups } from '../../src/iam/admin/directory.ts'
import { createIdentityProvider } from '../../src/iam/admin/identity-providers.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { createUser, listUsers } from '../../src/iam/admin/users.ts'
import { ACR_FED } from '../../src/iam/provider.ts'
import { type Harness, OPERATOR, startHarness } from '../iam/harness.ts'
import { browserSkip, chromiumPath } from './chromium.ts'

const REDIRECT = 'https://rp.example/cb'
const PASSWORD = 'upstream pass phrase'

/** Realm `acme` trusts realm `corp` of the same server as its upstream IdP: a real OIDC flow. */
describe('SSO federation with a second realm as the upstream IdP', { skip: browserSkip }, () => {
  let h: Harness
  let browser: Browser
  before(async () => {
    h = await startHarness()
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    })
    await createRealm(h.iam.admin, OPERATOR, { id: 'corp', mfaPolicy: 'none' })
    const carol = await createUser(h.iam.admin, OPERATOR, 'corp', {
      username: 'carol',
      password: PASSWORD,
      email: 'carol@corp.example',
      emailVerified: true,
    })
    await createGroup(h.iam.admin, OPERATOR, 'corp', { id: 'engineers', name: 'engineers' })
    await addMember(h.iam.admin, OPERATOR, 'corp', 'engineers', carol.id)
    const broker = await createClient(h.iam.admin, OPERATOR, 'corp', {
      clientId: 'acme-broker',
      name: 'Acme SSO',
      redirectUris: [`${h.issuer('acme').href}/broker/corp/callback`],
      grantTypes: ['authorization_code'],
      authMethod: 'client_secret_basic',
    })
    await createRealm(h.iam.admin, OPERATOR, { id: 'acme', mfaPolicy: 'everyone' })
    await createGroup(h.iam.admin, OPERATOR, 'acme', { id: 'eng', name: 'Engineering' })
    await createClient(h.iam.admin, OPERATOR, 'acme', {
      clientId: 'console',
      name: 'Console',
      authMethod: 'none',
      redirectUris: [REDIRECT],
    })
    await createIdentityProvider(h.iam.admin, OPERATOR, 'acme', {
      alias: 'corp',
      issuer: h.issuer('corp').href,
      clientId: 'acme-broker',
      clientSecret: broker.clientSecret,
      emailDomains: ['corp.example'],
      groupMapping: { engineers: 'eng' },
    })
  })
  after(async () => {
    await browser?.close()
    await h?.close()
  })

  test('home-realm discovery, upstream login, JIT provisioning and group mapping', async () => {
    const config = await h.discover('acme', 'console', client.None(), { redirect_uris: [REDIRECT] })
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    let resolveCb: (u: string) => void
    const callback = new Promise<string>((r) => {
      resolveCb = r
    })
    await context.route('https://rp.example/**', (route) => {
      resolveCb(route.request().url())
      return route.fulfill({ status: 200, body: 'ok' })
    })
    const page = await context.newPage()
    const verifier = client.randomPKCECodeVerifier()
    const state = client.randomState()
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid groups api',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    })
    await page.goto(url.href)
    await page.fill('#email', 'carol@corp.example')
    await page.click('#sso')
    // Now on the upstream realm's own login page.
    assert.match(page.url(), /\/realms\/corp\/interaction\//)
    await page.fill('#username', 'carol')
    await page.fill('#password', PASSWORD)
    await page.click('button[type=submit]')
    const tokens = await client.authorizationCodeGrant(config, new URL(await callback), {
      pkceCodeVerifier: verifier,
      expectedState: state,
    })
    const at = await h.iam.service.verifyAccessToken(tokens.access_token, 'acme')
    assert.deepEqual(at.amr, ['fed'])
    assert.equal(at.acr, ACR_FED)
    assert.deepEqual(tokens.claims()!.groups, ['Engineering'])
    const users = await listUsers(h.iam.admin, 'acme')
    const provisioned = users.find((u) => u.id === at.sub)!
    assert.equal(provisioned.username, 'corp:carol')
    assert.equal(provisioned.email, 'carol@corp.example')
    assert.ok((await listGroups(h.iam.admin, 'acme')).some((g) => g.id === 'eng'))
    // The upstream token is useless at acme: a different issuer and keys.
    assert.ok(
      h.events.events.some((e) => e.type === 'auth.login' && e.action === 'login:federated'),
    )
    await context.close()
  })

  test('an email domain without an IdP is refused; a forged callback state is refused', async () => {
    const res = await h.fetch(`${h.issuer('acme').href}/broker/corp/callback?code=x&state=forged`)
    assert.equal(res.status, 400)
    const none = await h.fetch(`${h.issuer('acme').href}/broker/nobody/callback?code=x&state=y`)
    assert.equal(none.status, 400)
  })
})
