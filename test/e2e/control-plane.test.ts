import assert from 'node:assert/strict'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { httpsRequest } from '../support/https.ts'
import { startTestServer, type TestServer } from '../support/server.ts'

/**
 * The whole control plane as `dflare up` builds it: bootstrap credentials → OAuth client
 * credentials at the platform realm → the gateway (JWT, Cedar, audit) → the API → the audit log.
 */
describe('control plane end to end', () => {
  let server: TestServer
  let boot: Record<string, string>
  let token: string
  const call = (
    method: string,
    path: string,
    opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
  ) =>
    httpsRequest(new URL(path, server.url), {
      method,
      ca: server.caPem,
      headers: {
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...opts.headers,
      },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    })

  async function clientCredentials(clientId: string, secret: string) {
    const discovery = await httpsRequest(`${boot.issuer}/.well-known/openid-configuration`, {
      ca: server.caPem,
    })
    const tokenEndpoint = discovery.json().token_endpoint as string
    return httpsRequest(tokenEndpoint, {
      method: 'POST',
      ca: server.caPem,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials&scope=api',
    })
  }

  before(async () => {
    server = await startTestServer()
    boot = JSON.parse(await readFile(join(server.home, 'bootstrap.json'), 'utf8'))
    const r = await clientCredentials(boot.client_id!, boot.client_secret!)
    assert.equal(r.status, 200, r.body)
    token = r.json().access_token
  })
  after(() => server.close())

  it('writes bootstrap.json (0600) with exactly the contract fields and never logs its secrets', async () => {
    assert.deepEqual(Object.keys(boot).sort(), [
      'admin_password',
      'admin_username',
      'ca_cert',
      'client_id',
      'client_secret',
      'issuer',
    ])
    assert.equal((await stat(join(server.home, 'bootstrap.json'))).mode & 0o777, 0o600)
    assert.equal(boot.issuer, `${server.plane.runtime.publicUrl.origin}/realms/platform`)
    const logs = JSON.stringify(server.logs)
    assert.ok(!logs.includes(boot.client_secret!))
    assert.ok(!logs.includes(boot.admin_password!))
  })

  it('OIDC responses (handed to oidc-provider) carry HSTS, the security headers and the correlation id', async () => {
    const r = await httpsRequest(`${boot.issuer}/.well-known/openid-configuration`, {
      ca: server.caPem,
      headers: { 'x-correlation-id': 'oidc-headers-probe-1' },
    })
    assert.equal(r.status, 200)
    assert.equal(r.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains')
    assert.equal(r.headers['x-content-type-options'], 'nosniff')
    assert.equal(r.headers['x-correlation-id'], 'oidc-headers-probe-1')
  })

  it('issues RS256 JWT access tokens (RFC 9068) for the platform API', () => {
    const header = decodeProtectedHeader(token)
    assert.equal(header.alg, 'RS256')
    assert.equal(header.typ, 'at+jwt')
    assert.ok(header.kid)
    const claims = decodeJwt(token)
    assert.equal(claims.tid, 'platform')
    assert.ok(claims.exp! - claims.iat! <= 300)
  })

  it('the bootstrap service client (platform-admin) uses the API through the gateway, and each call is audited', async () => {
    const created = await call('POST', '/api/v1/tenants/platform/clusters', {
      token,
      body: { name: 'e2e-cluster', labels: { env: 'test' } },
      headers: { 'x-correlation-id': 'e2e-create-cluster-1' },
    })
    assert.equal(created.status, 201, created.body)
    const list = await call('GET', '/api/v1/tenants/platform/clusters', { token })
    assert.equal(list.status, 200)
    assert.ok(list.json().items.some((c: { name: string }) => c.name === 'e2e-cluster'))
    const events = await call(
      'GET',
      '/api/v1/tenants/platform/audit/events?correlationId=e2e-create-cluster-1',
      { token },
    )
    assert.equal(events.status, 200, events.body)
    const found = events.json().events
    assert.equal(found.length, 1)
    assert.equal(found[0].event.action, 'cluster.create')
    assert.equal(found[0].event.outcome, 'success')
  })

  it('refuses a wrong client secret, a missing token and a tampered token', async () => {
    assert.equal((await clientCredentials(boot.client_id!, 'wrong-secret')).status, 401)
    assert.equal((await call('GET', '/api/v1/tenants/platform/clusters')).status, 401)
    const [h, p, s] = token.split('.')
    const tampered = `${h}.${p}.${s!.slice(0, -4)}AAAA`
    assert.equal(
      (await call('GET', '/api/v1/tenants/platform/clusters', { token: tampered })).status,
      401,
    )
  })

  it('a platform token is refused on an unknown tenant with 404 and no detail', async () => {
    const r = await call('GET', '/api/v1/tenants/no-such-tenant/clusters', { token })
    assert.equal(r.status, 404)
  })

  it('publishes the OpenAPI 3.1 document of every API route', async () => {
    const doc = (await call('GET', '/api/openapi.json')).json()
    assert.equal(doc.openapi, '3.1.0')
    for (const path of [
      '/api/v1/tenants/{tenant}/clusters',
      '/api/v1/tenants/{tenant}/audit/events',
      '/api/v1/authz/decisions',
    ])
      assert.ok(doc.paths[path], path)
  })
})
