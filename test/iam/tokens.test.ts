import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import * as client from 'openid-client'
import { createClient } from '../../src/iam/admin/clients.ts'
import { createDomain, createProject } from '../../src/iam/admin/directory.ts'
import { TOKEN_EXCHANGE } from '../../src/iam/provider.ts'
import { type Harness, OPERATOR, rejectsWith, seedRealm, startHarness } from './harness.ts'

describe('iam tokens over real HTTPS', () => {
  let h: Harness
  let secretA: string
  let secretB: string
  before(async () => {
    h = await startHarness()
    secretA = (await seedRealm(h, 'acme')).clientSecret
    secretB = (await seedRealm(h, 'globex')).clientSecret
    await createDomain(h.iam.admin, OPERATOR, 'acme', { id: 'research', name: 'Research' })
    await createProject(h.iam.admin, OPERATOR, 'acme', {
      id: 'llm',
      domainId: 'research',
      name: 'LLM',
    })
    await createDomain(h.iam.admin, OPERATOR, 'acme', { id: 'ops', name: 'Ops' })
  })
  after(() => h.close())

  test('discovery names the realm issuer and a JWKS with current and next keys', async () => {
    const config = await h.discover('acme', 'svc', client.ClientSecretBasic(secretA))
    const meta = config.serverMetadata()
    assert.equal(meta.issuer, `${h.base.origin}/realms/acme`)
    assert.ok(meta.jwks_uri?.startsWith('https://'))
    const jwks = (await (await h.fetch(meta.jwks_uri!)).json()) as {
      keys: { kid: string; d?: string; alg: string }[]
    }
    assert.equal(jwks.keys.length, 2)
    for (const k of jwks.keys) {
      assert.equal(k.alg, 'RS256')
      assert.equal(k.d, undefined, 'no private part published')
    }
    assert.deepEqual(meta.id_token_signing_alg_values_supported, ['RS256'])
  })

  test('client credentials: RFC 9068 JWT with tenant and org scope, verified by the gateway verifier', async () => {
    const config = await h.discover('acme', 'svc', client.ClientSecretBasic(secretA))
    const tokens = await client.clientCredentialsGrant(config, { scope: 'api' })
    const header = decodeProtectedHeader(tokens.access_token)
    assert.equal(header.alg, 'RS256')
    assert.equal(header.typ, 'at+jwt')
    assert.ok(header.kid)
    const claims = await h.iam.service.verifyAccessToken(tokens.access_token, 'acme')
    assert.equal(claims.tid, 'acme')
    assert.deepEqual(claims.scope, { kind: 'org' })
    assert.equal(claims.sub, 'svc')
    assert.equal(claims.service, true)
    assert.equal(claims.aud, `${h.base.origin}/api`)
    assert.ok(claims.exp - claims.iat <= 300)
    assert.ok(h.events.events.some((e) => e.type === 'token.issued' && e.outcome === 'success'))
  })

  test('a wrong client secret is refused', async () => {
    const config = await h.discover('acme', 'svc', client.ClientSecretBasic('not-the-secret'))
    await rejectsWith(client.clientCredentialsGrant(config, { scope: 'api' }), 'invalid_client')
  })

  test('a token from realm A is rejected by realm B, and B’s client cannot use A', async () => {
    const a = await client.clientCredentialsGrant(
      await h.discover('acme', 'svc', client.ClientSecretBasic(secretA)),
      { scope: 'api' },
    )
    await assert.rejects(h.iam.service.verifyAccessToken(a.access_token, 'globex'), /rejected/)
    const crossed = await h.discover('acme', 'svc', client.ClientSecretBasic(secretB))
    await rejectsWith(client.clientCredentialsGrant(crossed, { scope: 'api' }), 'invalid_client')
  })

  test('token exchange narrows org -> domain -> project and refuses widening', async () => {
    const config = await h.discover('acme', 'svc', client.ClientSecretBasic(secretA))
    const org = await client.clientCredentialsGrant(config, { scope: 'api' })
    const exchange = (subject: string, scope: string) =>
      client.genericGrantRequest(config, TOKEN_EXCHANGE, {
        subject_token: subject,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        scope,
      })
    const domain = await exchange(org.access_token, 'domain:research')
    assert.equal(decodeJwt(domain.access_token).tscope, 'domain:research')
    const project = await exchange(domain.access_token, 'project:llm')
    const verified = await h.iam.service.verifyAccessToken(project.access_token, 'acme')
    assert.deepEqual(verified.scope, { kind: 'project', id: 'llm' })
    await rejectsWith(exchange(project.access_token, 'domain:research'), 'invalid_scope')
    await rejectsWith(exchange(project.access_token, 'org'), 'invalid_scope')
    await rejectsWith(exchange(domain.access_token, 'domain:ops'), 'invalid_scope')
    await rejectsWith(exchange(org.access_token, 'project:nope'), 'invalid_scope')
    await rejectsWith(exchange(org.access_token, 'domain:research project:llm'), 'invalid_scope')
    assert.ok(h.events.events.some((e) => e.type === 'token.exchanged' && e.outcome === 'denied'))
  })

  test('authorization requests without PKCE, or with plain PKCE, are refused', async () => {
    await createClient(h.iam.admin, OPERATOR, 'acme', {
      clientId: 'spa',
      name: 'spa',
      authMethod: 'none',
      redirectUris: ['https://rp.example/cb'],
    })
    const auth = async (extra: Record<string, string>) => {
      const q = new URLSearchParams({
        client_id: 'spa',
        response_type: 'code',
        redirect_uri: 'https://rp.example/cb',
        scope: 'openid api',
        state: 's',
        ...extra,
      })
      const res = await h.fetch(`${h.issuer('acme').href}/auth?${q}`)
      return new URL(res.headers.get('location') ?? '/', h.base).searchParams
    }
    assert.equal((await auth({})).get('error'), 'invalid_request')
    const plain = await auth({ code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' })
    assert.equal(plain.get('error'), 'invalid_request')
    const ok = await auth({ code_challenge: 'a'.repeat(43), code_challenge_method: 'S256' })
    assert.equal(ok.get('error'), null)
  })

  test('introspection and revocation of JWT access tokens', async () => {
    const config = await h.discover('acme', 'svc', client.ClientSecretBasic(secretA))
    const t = await client.clientCredentialsGrant(config, { scope: 'api' })
    const active = await client.tokenIntrospection(config, t.access_token)
    assert.equal(active.active, true)
    assert.equal(active.tid, 'acme')
    await client.tokenRevocation(config, t.access_token)
    await assert.rejects(h.iam.service.verifyAccessToken(t.access_token, 'acme'), /revoked/)
    const after = await client.tokenIntrospection(config, t.access_token)
    assert.equal(after.active, false)
  })
})
