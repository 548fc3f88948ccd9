import { randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { rootCertificates } from 'node:tls'
import type { Command } from 'commander'
import * as oidc from 'openid-client'
import { CLI_CLIENT_ID, PLATFORM_REALM } from '../../iam/bootstrap.ts'
import { caFetch } from '../../iam/https-fetch.ts'
import { loadDflareConfig } from '../../server/config.ts'
import { CliError, EXIT, printJson } from '../exit.ts'

/**
 * `dflare login`: OAuth 2.0 for native apps (RFC 8252) against a realm of a Dflare server —
 * authorization code + PKCE (S256) with a one-shot loopback redirect, or `--device` for the
 * device authorization grant (RFC 8628) on headless nodes. Tokens are stored in
 * `$DFLARE_HOME/credentials/{realm}.json` (0600) and never printed.
 */
export interface LoginOptions {
  server?: string
  realm: string
  clientId: string
  ca?: string
  device?: boolean
  json?: boolean
  config?: string
  /** Seconds to wait for the browser or the device approval. */
  timeout: string
}

const SCOPE = 'openid profile api'

async function saveTokens(home: string, realm: string, data: Record<string, unknown>) {
  const dir = join(home, 'credentials')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const path = join(dir, `${realm}.json`)
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 })
  await chmod(tmp, 0o600)
  await rename(tmp, path)
  return path
}

/** Waits for one redirect to http://127.0.0.1:PORT/callback and answers it with a short page. */
async function loopback(timeoutMs: number) {
  let resolveUrl: (u: URL) => void
  let rejectUrl: (e: Error) => void
  const received = new Promise<URL>((resolve, reject) => {
    resolveUrl = resolve
    rejectUrl = reject
  })
  const server = createServer((req, res) => {
    const url = new URL(
      req.url ?? '/',
      `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    )
    if (url.pathname !== '/callback') {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
    res.end('Signed in; you can close this window and return to the terminal.\n')
    resolveUrl(url)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const timer = setTimeout(
    () => rejectUrl(new CliError('timed out waiting for the browser')),
    timeoutMs,
  )
  const port = (server.address() as AddressInfo).port
  return {
    redirectUri: `http://127.0.0.1:${port}/callback`,
    received: received.finally(() => {
      clearTimeout(timer)
      server.close()
    }),
  }
}

export async function runLogin(
  opts: LoginOptions,
  io: { err: { write(s: string): unknown } } = { err: process.stderr },
): Promise<number> {
  const { config } = loadDflareConfig({ file: opts.config })
  const home = config.core.home
  const server = new URL(opts.server ?? config.server.publicUrl.origin)
  const caPath = opts.ca ?? join(home, 'pki', 'ca.crt')
  const ca = await readFile(caPath, 'utf8').catch(() => undefined)
  const fetch = caFetch(ca ? [...rootCertificates, ca] : [...rootCertificates])
  const timeoutMs = Number(opts.timeout) * 1000
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new CliError('--timeout must be seconds', EXIT.usage)
  const issuer = new URL(`${server.origin}/realms/${opts.realm}`)
  try {
    let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers
    if (opts.device) {
      const cfg = await oidc.discovery(issuer, opts.clientId, undefined, oidc.None(), {
        [oidc.customFetch]: fetch,
      })
      const device = await oidc.initiateDeviceAuthorization(cfg, { scope: SCOPE })
      io.err.write(
        `To sign in, open ${device.verification_uri} and enter the code ${device.user_code}\n` +
          (device.verification_uri_complete
            ? `(or open ${device.verification_uri_complete})\n`
            : ''),
      )
      const abort = AbortSignal.timeout(timeoutMs)
      tokens = await oidc.pollDeviceAuthorizationGrant(cfg, device, undefined, { signal: abort })
    } else {
      const lb = await loopback(timeoutMs)
      const cfg = await oidc.discovery(
        issuer,
        opts.clientId,
        { redirect_uris: [lb.redirectUri] },
        oidc.None(),
        { [oidc.customFetch]: fetch },
      )
      const verifier = oidc.randomPKCECodeVerifier()
      const state = oidc.randomState()
      const nonce = oidc.randomNonce()
      const url = oidc.buildAuthorizationUrl(cfg, {
        redirect_uri: lb.redirectUri,
        scope: SCOPE,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      })
      io.err.write(`Open this URL in your browser to sign in:\n${url.href}\n`)
      const callback = await lb.received
      tokens = await oidc.authorizationCodeGrant(cfg, callback, {
        pkceCodeVerifier: verifier,
        expectedState: state,
        expectedNonce: nonce,
      })
    }
    const claims = tokens.claims()
    const expiresAt = new Date(Date.now() + (tokens.expiresIn() ?? 0) * 1000).toISOString()
    const path = await saveTokens(home, opts.realm, {
      issuer: issuer.href,
      client_id: opts.clientId,
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
      id_token: tokens.id_token,
      expires_at: expiresAt,
    })
    const summary = { issuer: issuer.href, subject: claims?.sub, expiresAt, credentials: path }
    if (opts.json) printJson(summary)
    else
      io.err.write(
        `Logged in to ${opts.realm} as ${claims?.preferred_username ?? claims?.sub}; token expires ${expiresAt}\n`,
      )
    return EXIT.ok
  } catch (err) {
    if (err instanceof CliError) throw err
    const code = (err as { error?: string; code?: string }).error ?? (err as Error).name
    throw new CliError(`login failed: ${code}`)
  } finally {
    fetch.close()
  }
}

export function registerLogin(program: Command) {
  program
    .command('login')
    .description('Sign in to a realm (authorization code + PKCE in the browser, or --device)')
    .option('--server <url>', 'Dflare server URL (default: the configured public URL)')
    .option('--realm <realm>', 'realm (tenant) to sign in to', PLATFORM_REALM)
    .option('--client-id <id>', 'public OAuth client of the CLI', CLI_CLIENT_ID)
    .option('--ca <file>', 'CA certificate to trust (default: $DFLARE_HOME/pki/ca.crt)')
    .option('--device', 'use the device authorization grant (headless nodes)')
    .option('--timeout <seconds>', 'how long to wait for approval', '300')
    .option('--json', 'print the result as JSON')
    .option('--config <file>', 'dflare.yaml to read')
    .action(async (opts: LoginOptions) => {
      process.exitCode = await runLogin(opts)
    })
}
