import assert from 'node:assert/strict'
import { createHash, createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { base64url, decodeProtectedHeader, type JWK, SignJWT } from 'jose'
import * as client from 'openid-client'
import { type Db, openDb } from '../../src/core/db/index.ts'
import { recordRevokedSids } from '../../src/iam/adapter.ts'
import { createSealer, loadKek } from '../../src/iam/kek.ts'
import { loadKeys } from '../../src/iam/keys.ts'
import { testEngine } from '../support/db.ts'
import { type Harness, seedRealm, startHarness } from './harness.ts'

/** Forged and malformed tokens the gateway verifier must reject. */
describe('verifyAccessToken rejects forgeries', () => {
  let h: Harness
  let good: string
  let signingKey: JWK
  let publicJwk: JWK
  const realm = 'acme'
  before(async () => {
    h = await startHarness()
    const { clientSecret } = await seedRealm(h, realm)
    const config = await h.discover(realm, 'svc', client.ClientSecretBasic(clientSecret))
    good = (await client.clientCredentialsGrant(config, { scope: 'api' })).access_token
    const sealer = createSealer(await loadKek(h.home))
    signingKey = (await loadKeys(h.t.db, sealer, realm)).signing[0]!
    publicJwk = (await h.iam.service.jwks(realm)).keys.find((k) => k.kid === signingKey.kid)!
  })
  after(() => h.close())

  const claims = () => ({
    iss: `${h.base.origin}/realms/${realm}`,
    aud: `${h.base.origin}/api`,
    sub: 'svc',
    client_id: 'svc',
    tid: realm,
    tscope: 'org',
    jti: randomUUID(),
  })
  const sign = (
    payload: Record<string, unknown>,
    opts: { kid?: string; exp?: number | string; nbf?: number | string; typ?: string } = {},
  ) => {
    const jwt = new SignJWT(payload)
      .setProtectedHeader({
        alg: 'RS256',
        kid: opts.kid ?? signingKey.kid!,
        typ: opts.typ ?? 'at+jwt',
      })
      .setIssuedAt()
      .setExpirationTime(opts.exp ?? '5m')
    if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf)
    return jwt.sign(createPrivateKey({ key: signingKey as never, format: 'jwk' }))
  }
  const rejects = (token: string, reason: RegExp, r = realm) =>
    assert.rejects(h.iam.service.verifyAccessToken(token, r), reason)

  test('the genuine token verifies, and a self-signed copy of it with the real key too', async () => {
    assert.equal((await h.iam.service.verifyAccessToken(good, realm)).tid, realm)
    assert.equal((await h.iam.service.verifyAccessToken(await sign(claims()), realm)).sub, 'svc')
  })

  test('alg none', async () => {
    const [, payload] = good.split('.')
    const header = base64url.encode(
      JSON.stringify({ alg: 'none', typ: 'at+jwt', kid: signingKey.kid }),
    )
    await rejects(`${header}.${payload}.`, /algorithm not allowed/)
  })

  test('HS256 signed with the public key as the HMAC secret', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(publicJwk))
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: signingKey.kid!, typ: 'at+jwt' })
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(secret)
    await rejects(token, /algorithm not allowed/)
    const pem = createHash('sha256').update('x').digest()
    const token2 = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: signingKey.kid!, typ: 'at+jwt' })
      .setExpirationTime('5m')
      .sign(pem)
    await rejects(token2, /algorithm not allowed/)
  })

  test('expired', async () => {
    await rejects(await sign(claims(), { exp: Math.floor(Date.now() / 1000) - 60 }), /expired/)
  })

  test('not yet valid (future nbf)', async () => {
    await rejects(await sign(claims(), { nbf: Math.floor(Date.now() / 1000) + 600 }), /nbf/)
  })

  test('wrong issuer and wrong audience', async () => {
    await rejects(await sign({ ...claims(), iss: `${h.base.origin}/realms/other` }), /iss/)
    await rejects(await sign({ ...claims(), aud: 'https://elsewhere.example/api' }), /aud/)
  })

  test('wrong tenant claim, missing scope, wrong typ', async () => {
    await rejects(await sign({ ...claims(), tid: 'globex' }), /wrong tenant/)
    const { tscope: _, ...noScope } = claims()
    await rejects(await sign(noScope), /tscope/)
    await rejects(await sign({ ...claims(), tscope: 'project:../x' }), /scope claim/)
    await rejects(await sign(claims(), { typ: 'JWT' }), /typ|signature or format/)
  })

  test('unknown kid, and a key the realm never published', async () => {
    await rejects(await sign(claims(), { kid: 'no-such-kid' }), /unknown key|signature/)
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const forged = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'RS256', kid: signingKey.kid!, typ: 'at+jwt' })
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey)
    await rejects(forged, /signature/)
  })

  test('a tampered payload', async () => {
    const [header, payload, sig] = good.split('.')
    const body = JSON.parse(Buffer.from(payload!, 'base64url').toString())
    body.tscope = 'project:llm'
    await rejects(`${header}.${base64url.encode(JSON.stringify(body))}.${sig}`, /signature/)
    assert.equal(decodeProtectedHeader(good).alg, 'RS256')
  })

  test('a token of realm A presented to realm B', async () => {
    await seedRealm(h, 'globex')
    await rejects(good, /rejected/, 'globex')
    await rejects(good, /rejected/, 'no-such-realm')
  })
})

/**
 * The gateway's view of revocations and realm state is held in memory (GatewayState) and
 * verified tokens are remembered; neither may ever let through what the database refuses. The
 * writer is a second database handle: another process on PostgreSQL, the same engine on PGlite.
 */
describe('remembered verifications and in-memory revocation state', () => {
  let h: Harness
  let other: Db
  let signingKey: JWK
  const realm = 'acme'
  before(async () => {
    h = await startHarness()
    const { clientSecret } = await seedRealm(h, realm)
    // The realm's keys are made when its issuer is first used.
    const config = await h.discover(realm, 'svc', client.ClientSecretBasic(clientSecret))
    await client.clientCredentialsGrant(config, { scope: 'api' })
    const sealer = createSealer(await loadKek(h.home))
    signingKey = (await loadKeys(h.t.db, sealer, realm)).signing[0]!
    other = h.t.url ? await openDb({ kind: 'postgres', url: h.t.url }) : h.t.db
  })
  after(async () => {
    if (other !== h.t.db) await other.close()
    await h.close()
  })

  const token = (extra: Record<string, unknown> = {}, exp: number | string = '5m') =>
    new SignJWT({
      iss: `${h.base.origin}/realms/${realm}`,
      aud: `${h.base.origin}/api`,
      sub: 'alice',
      client_id: 'cli',
      tid: realm,
      tscope: 'org',
      jti: randomUUID(),
      auth_time: Math.floor(Date.now() / 1000),
      ...extra,
    })
      .setProtectedHeader({ alg: 'RS256', kid: signingKey.kid!, typ: 'at+jwt' })
      .setIssuedAt()
      .setExpirationTime(exp)
      .sign(createPrivateKey({ key: signingKey as never, format: 'jwk' }))
  const verify = (t: string) => h.iam.service.verifyAccessToken(t, realm)

  test('a token revoked by another process is refused on the very next request', async () => {
    const t = await token()
    const jti = (await verify(t)).jti
    await verify(t) // remembered, answered from memory
    assert.equal(h.iam.gatewayState.ready, true, 'the in-memory state is in use')
    await other.query(
      `INSERT INTO iam.revoked_tokens (jti, realm, expires_at) VALUES ($1, $2, now() + interval '10 minutes')`,
      [jti, realm],
    )
    // No waiting for the notification.
    await assert.rejects(verify(t), /revoked/)
    assert.equal(await h.iam.service.isTokenRevoked(jti), true)
  })

  test('a revoked login session is refused at once, for every token that carries it', async () => {
    const sid = `sid-${randomUUID()}`
    const first = await token({ sid })
    const second = await token({ sid })
    await verify(first)
    await verify(second)
    assert.equal(await h.iam.service.isSessionRevoked(realm, sid), false)
    await recordRevokedSids(other, realm, [sid])
    await assert.rejects(verify(first), /session revoked/)
    await assert.rejects(verify(second), /session revoked/)
    assert.equal(await h.iam.service.isSessionRevoked(realm, sid), true)
    // Another session of the same user is unaffected.
    assert.equal((await verify(await token({ sid: `sid-${randomUUID()}` }))).sub, 'alice')
  })

  test('a suspended realm is gone at once, a lowered lifetime limit applies at once', async () => {
    await seedRealm(h, 'initech')
    assert.equal(await h.iam.service.realmExists('initech'), true)
    assert.equal(await h.iam.service.realmExists('initech'), true) // cached
    await other.query('UPDATE iam.realms SET disabled = true WHERE id = $1', ['initech'])
    assert.equal(await h.iam.service.realmExists('initech'), false)
    assert.equal(await h.iam.service.maxAccessTokenTtl(realm), 300) // cached
    await other.query('UPDATE iam.realms SET access_token_ttl = 60 WHERE id = $1', [realm])
    assert.equal(await h.iam.service.maxAccessTokenTtl(realm), 60)
  })

  test('a remembered verification is not reused past the token expiry', async (t) => {
    const tok = await token({}, '2m')
    await verify(tok)
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 10 * 60_000 })
    await assert.rejects(verify(tok), /rejected/)
  })

  test('a remembered verification is only reused for the same token string', async () => {
    const tok = await token()
    await verify(tok)
    const [header, payload, sig] = tok.split('.')
    const body = JSON.parse(Buffer.from(payload!, 'base64url').toString())
    body.sub = 'mallory'
    await assert.rejects(
      verify(`${header}.${base64url.encode(JSON.stringify(body))}.${sig}`),
      /signature/,
    )
  })

  test('what one caller does with its claims never reaches the next caller', async () => {
    const tok = await token({ amr: ['pwd', 'otp'] })
    const first = await verify(tok)
    first.amr.push('mfa')
    first.raw.sub = 'mallory'
    ;(first as { sub: string }).sub = 'mallory'
    const second = await verify(tok)
    assert.deepEqual(second.amr, ['pwd', 'otp'])
    assert.equal(second.sub, 'alice')
    assert.equal(second.raw.sub, 'alice')
  })

  test('lost listener: answers come from the database, never stale', {
    skip: testEngine !== 'postgres',
  }, async () => {
    const t = await token()
    const jti = (await verify(t)).jti
    await other.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`,
    )
    const deadline = Date.now() + 5000
    while (h.iam.gatewayState.ready && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10))
    assert.equal(h.iam.gatewayState.ready, false)
    await other.query(
      `INSERT INTO iam.revoked_tokens (jti, realm, expires_at) VALUES ($1, $2, now() + interval '10 minutes')`,
      [jti, realm],
    )
    await assert.rejects(verify(t), /revoked/)
    while (!h.iam.gatewayState.ready && Date.now() < deadline + 5000)
      await new Promise((r) => setTimeout(r, 10))
    assert.equal(h.iam.gatewayState.ready, true, 'listening again')
    await assert.rejects(verify(t), /revoked/)
  })
})
