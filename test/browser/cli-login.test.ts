import assert from 'node:assert/strict'
import { readFile, stat } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import { runLogin } from '../../src/cli/commands/login.ts'
import { readBootstrap } from '../../src/iam/bootstrap.ts'
import { totpCode } from '../../src/iam/credentials/totp.ts'
import { type Harness, startHarness } from '../iam/harness.ts'
import { browserSkip, chromiumPath } from './chromium.ts'

/** `dflare login` against the bootstrapped platform realm, as the first admin (MFA enrolment). */
describe('dflare login (code + PKCE via loopback)', { skip: browserSkip }, () => {
  let h: Harness
  let browser: Browser
  before(async () => {
    h = await startHarness()
    process.env.DFLARE_HOME = h.home
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    })
  })
  after(async () => {
    delete process.env.DFLARE_HOME
    await browser?.close()
    await h?.close()
  })

  test('the bootstrap admin logs in, enrols TOTP, and the CLI stores 0600 credentials', async () => {
    const boot = await readBootstrap(h.home)
    assert.equal(boot.issuer, h.issuer('platform').href)
    let resolveUrl: (u: string) => void
    const authUrl = new Promise<string>((r) => {
      resolveUrl = r
    })
    let stderr = ''
    const err = {
      write(s: string) {
        stderr += s
        const m = /https:\/\/\S+\/auth\?\S+/.exec(stderr)
        if (m) resolveUrl(m[0])
      },
    }
    const login = runLogin(
      { server: h.base.origin, realm: 'platform', clientId: 'dflare-cli', timeout: '60' },
      { err },
    )
    const context = await browser.newContext({ ignoreHTTPSErrors: true })
    const page = await context.newPage()
    await page.goto(await authUrl)
    await page.fill('#username', boot.admin_username)
    await page.fill('#password', boot.admin_password)
    await page.click('button[type=submit]')
    const secret = (await page.textContent('#totp-secret'))!.trim()
    await page.fill('#code', totpCode(secret))
    await page.click('button[type=submit]')
    await page.waitForSelector('#recovery-codes')
    await page.click('button[type=submit]')
    await page.waitForSelector('text=return to the terminal')
    assert.equal(await login, 0)
    const path = `${h.home}/credentials/platform.json`
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    const saved = JSON.parse(await readFile(path, 'utf8'))
    const claims = await h.iam.service.verifyAccessToken(saved.access_token, 'platform')
    assert.ok(claims.amr.includes('mfa'))
    assert.ok(!stderr.includes(saved.access_token))
    await context.close()
  })
})
