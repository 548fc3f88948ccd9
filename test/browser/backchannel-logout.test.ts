import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createLocalJWKSet, type JWTPayload, jwtVerify } from 'jose'
import * as client from 'openid-client'
import { type Browser, type BrowserContext, chromium } from 'playwright-core'
import { createClient } from '../../src/iam/admin/clients.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { listSessions, revokeSession } from '../../src/iam/admin/sessions.ts'
import { createUser } from '../../src/iam/admin/users.ts'
import { OutboundRefused, providerFetch } from '../../src/iam/backchannel.ts'
import { ensureServerTls } from '../../src/pki/server-identity.ts'
import { type Harness, OPERATOR, startHarness } from '../iam/harness.ts'
import { browserSkip, chromiumPath } from './chromium.ts'

const PASSWORD = 'correct horse battery staple'
const EVENT = 'http://schemas.openid.net/event/backchannel-logout'

/** An HTTPS relying-party endpoint that records what it is sent. */
async function receiver(tls: { key: string; cert: string }) {
  const received: { path: string; body: URLSearchParams; contentType: string }[] = []
  const server: Server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const path = req.url ?? ''
      if (req.method === 'GET' && path.startsWith('/cb/')) {
        // The RP's redirect URI (authorization responses), not a logout.
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
        return
      }
      if (req.method !== 'POST') {
        res.writeHead(404).end()
        return
      }
      if (path === '/redirect') {
        // Whatever the OP is told, it must not follow this.
        res.writeHead(302, { location: '/logout' }).end()
        return
      }
      received.push({
        path,
        body: new URLSearchParams(Buffer.concat(chunks).toString('utf8')),
        contentType: String(req.headers['content-type']),
      })
      res.writeHead(200, { 'cache-control': 'no-store' }).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    received,
    close: () => new Promise((resolve) => server.close(resolve)),
  }
}

/** Waits (bounded) until `check` holds; the bound is a failsafe, never a timing assertion. */
async function eventually(check: () => Promise<boolean> | boolean, what: string) {
  const deadline = Date.now() + 30_000
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/**
 * OpenID Connect Back-Channel Logout 1.0: relying parties registered with a back-channel logout
 * URI get a signed logout token when the user logs out at the OP (RP-initiated logout) and when
 * an administrator revokes the session. The OP reaches only the registered URIs, over TLS
 * trusting the internal CA, and follows no redirect.
 */
describe('back-channel logout to relying parties', { skip: browserSkip }, () => {
  let h: Harness
  let browser: Browser
  let rp: Awaited<ReturnType<typeof receiver>>
  let stranger: Awaited<ReturnType<typeof receiver>>
  let strangerHome: string
  let jwks: ReturnType<typeof createLocalJWKSet>
  let alice: string
  const configs: Record<string, client.Configuration> = {}

  before(async () => {
    h = await startHarness()
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    })
    // The RP has a certificate of the internal CA (the server's own, for 127.0.0.1); the
    // stranger's comes from another CA.
    rp = await receiver(await ensureServerTls({ dir: join(h.home, 'pki'), hosts: ['127.0.0.1'] }))
    strangerHome = await mkdtemp(join(tmpdir(), 'dflare-stranger-'))
    stranger = await receiver(await ensureServerTls({ dir: strangerHome, hosts: ['127.0.0.1'] }))
    await createRealm(h.iam.admin, OPERATOR, { id: 'acme', mfaPolicy: 'none' })
    alice = (
      await createUser(h.iam.admin, OPERATOR, 'acme', { username: 'alice', password: PASSWORD })
    ).id
    const clients: [string, string | undefined][] = [
      ['portal', `${rp.url}/logout/portal`],
      ['redirector', `${rp.url}/redirect`],
      ['untrusted', `${stranger.url}/logout/untrusted`],
      ['quiet', undefined],
    ]
    for (const [id, uri] of clients) {
      await createClient(h.iam.admin, OPERATOR, 'acme', {
        clientId: id,
        name: id,
        authMethod: 'none',
        redirectUris: [`${rp.url}/cb/${id}`],
        ...(uri ? { backchannelLogoutUri: uri } : {}),
      })
      configs[id] = await h.discover('acme', id, client.None(), {
        redirect_uris: [`${rp.url}/cb/${id}`],
      })
    }
    const res = await h.fetch(`${h.issuer('acme').href}/jwks`)
    jwks = createLocalJWKSet((await res.json()) as Parameters<typeof createLocalJWKSet>[0])
  })
  after(async () => {
    await browser?.close()
    await rp?.close()
    await stranger?.close()
    await h?.close()
    if (strangerHome) await rm(strangerHome, { recursive: true, force: true })
  })

  /** Signs alice in to `clientIds` in one browser session (SSO after the first). */
  async function signIn(context: BrowserContext, clientIds: string[]) {
    const page = await context.newPage()
    const idTokens: Record<string, client.IDToken> = {}
    const raw: Record<string, string> = {}
    for (const [i, id] of clientIds.entries()) {
      const config = configs[id]!
      const verifier = client.randomPKCECodeVerifier()
      const state = client.randomState()
      const nonce = client.randomNonce()
      await page.goto(
        client.buildAuthorizationUrl(config, {
          redirect_uri: `${rp.url}/cb/${id}`,
          scope: 'openid',
          code_challenge: await client.calculatePKCECodeChallenge(verifier),
          code_challenge_method: 'S256',
          state,
          nonce,
        }).href,
      )
      if (i === 0) {
        await page.fill('#username', 'alice')
        await page.fill('#password', PASSWORD)
        await page.click('button[type=submit]')
      }
      // The RP's own callback endpoint (on the receiver) ends the redirect chain.
      await page.waitForURL(`${rp.url}/cb/${id}?**`)
      const tokens = await client.authorizationCodeGrant(config, new URL(page.url()), {
        pkceCodeVerifier: verifier,
        expectedState: state,
        expectedNonce: nonce,
      })
      idTokens[id] = tokens.claims()!
      raw[id] = tokens.id_token!
    }
    return { page, idTokens, raw }
  }

  /** Verifies a logout token as an RP must (OIDC Back-Channel Logout 1.0 §2.6). */
  async function verifyLogoutToken(token: string, audience: string): Promise<JWTPayload> {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: h.issuer('acme').href,
      audience,
      typ: 'logout+jwt',
      algorithms: ['RS256'],
      requiredClaims: ['iat', 'exp', 'jti', 'sub', 'sid', 'events'],
    })
    assert.equal(protectedHeader.alg, 'RS256')
    assert.deepEqual(payload.events, { [EVENT]: {} })
    assert.equal('nonce' in payload, false, 'a logout token never carries a nonce')
    return payload
  }

  test('RP-initiated logout: the OP posts a logout token with the session id the RP knows', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    const { page, idTokens, raw } = await signIn(context, ['portal'])
    const sid = idTokens.portal!.sid as string
    assert.ok(sid, 'the ID token carries sid (backchannel_logout_session_required)')
    await page.goto(client.buildEndSessionUrl(configs.portal!, { id_token_hint: raw.portal! }).href)
    await page.click('button[name=logout]')
    await page.waitForSelector('text=You are signed out')
    await eventually(() => rp.received.length === 1, 'the logout token')
    const [got] = rp.received.splice(0)
    assert.equal(got!.path, '/logout/portal')
    assert.equal(got!.contentType, 'application/x-www-form-urlencoded')
    const claims = await verifyLogoutToken(got!.body.get('logout_token')!, 'portal')
    assert.equal(claims.sub, alice)
    assert.equal(claims.sid, sid)
    // Another client's audience, or another realm's issuer, does not verify.
    await assert.rejects(
      jwtVerify(got!.body.get('logout_token')!, jwks, { audience: 'quiet' }),
      /aud/,
    )
    assert.ok(
      h.events.events.some((e) => e.type === 'auth.backchannel_logout' && e.outcome === 'success'),
    )
    await context.close()
  })

  test('admin session revocation: every registered RP of the session is told, after the revocation commits', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    const { idTokens } = await signIn(context, ['portal', 'redirector', 'untrusted', 'quiet'])
    const session = (await listSessions(h.iam.admin, 'acme', { userId: alice })).find((s) =>
      s.clients.includes('portal'),
    )
    assert.ok(session)
    assert.deepEqual([...session.clients].sort(), ['portal', 'quiet', 'redirector', 'untrusted'])
    const before = h.events.events.length
    await revokeSession(h.iam.admin, OPERATOR, 'acme', session.id)
    await eventually(() => rp.received.length === 1, 'the logout token')
    const [got] = rp.received.splice(0)
    assert.equal(got!.path, '/logout/portal')
    const claims = await verifyLogoutToken(got!.body.get('logout_token')!, 'portal')
    assert.equal(claims.sub, alice)
    assert.equal(claims.sid, idTokens.portal!.sid)
    // The redirecting RP and the one whose certificate the OP does not trust got nothing; their
    // logouts failed and wait for a retry; the client without a URI was never queued.
    await eventually(async () => {
      const { rows } = await h.t.db.query<{ client_id: string; attempts: number }>(
        'SELECT client_id, attempts FROM iam.backchannel_logouts ORDER BY client_id',
      )
      return (
        rows.length === 2 &&
        rows.every((r) => r.attempts === 1) &&
        rows[0]!.client_id === 'redirector' &&
        rows[1]!.client_id === 'untrusted'
      )
    }, 'the failed deliveries')
    await eventually(
      () =>
        h.events.events
          .slice(before)
          .filter((e) => e.type === 'auth.backchannel_logout' && e.outcome === 'failure').length ===
        2,
      'the failure events',
    )
    const events = h.events.events.slice(before).filter((e) => e.type === 'auth.backchannel_logout')
    assert.deepEqual(events.map((e) => [e.resource?.id, e.outcome, e.reason ?? null]).sort(), [
      ['portal', 'success', null],
      ['redirector', 'failure', 'delivery_failed'],
      ['untrusted', 'failure', 'delivery_failed'],
    ])
    assert.equal(rp.received.length, 0, 'the redirect was not followed')
    assert.equal(stranger.received.length, 0, 'the untrusted server got no token')
    assert.ok(!JSON.stringify(h.events.events).includes(got!.body.get('logout_token')!))
    await context.close()
  })

  test("the OP's outbound HTTP reaches only registered back-channel logout URIs over https", async () => {
    const fetch = providerFetch(h.t.db, 'acme', h.fetch)
    for (const url of [
      `${rp.url}/logout/other`, // same host, unregistered path
      `${rp.url}/logout/portal?x=1`,
      `${rp.url.replace('https:', 'http:')}/logout/portal`,
      'https://169.254.169.254/latest/meta-data/',
    ])
      await assert.rejects(fetch(url, { method: 'POST' }), OutboundRefused, url)
    // Another realm's registrations do not count for this one.
    await createRealm(h.iam.admin, OPERATOR, { id: 'globex', mfaPolicy: 'none' })
    await assert.rejects(
      providerFetch(h.t.db, 'globex', h.fetch)(`${rp.url}/logout/portal`, { method: 'POST' }),
      OutboundRefused,
    )
    assert.equal(rp.received.length, 0)
    // The registered one is reachable.
    const ok = await fetch(`${rp.url}/logout/portal`, { method: 'POST', body: 'x=1' })
    assert.equal(ok.status, 200)
    rp.received.splice(0)
    // Registration refuses what the OP would not send to.
    for (const uri of [
      'http://127.0.0.1/logout',
      'https://u:p@rp.example/logout',
      'https://rp.example/#x',
    ])
      await assert.rejects(
        createClient(h.iam.admin, OPERATOR, 'acme', {
          name: 'bad',
          authMethod: 'none',
          redirectUris: ['https://bad.example/cb'],
          backchannelLogoutUri: uri,
        }),
        /backchannelLogoutUri|Invalid/,
      )
  })
})
