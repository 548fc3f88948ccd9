import assert from 'node:assert/strict'
import { createHash, createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { base64url, decodeProtectedHeader, type JWK, SignJWT } from 'jose'
import * as client from 'openid-client'
import { createSealer, loadKek } from '../../src/iam/kek.ts'
import { loadKeys } from '../../src/iam/keys.ts'
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
