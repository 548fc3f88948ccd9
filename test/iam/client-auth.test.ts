import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import * as client from 'openid-client'
import { createClient } from '../../src/iam/admin/clients.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { caFetch } from '../../src/iam/https-fetch.ts'
import {
  generateEcKeyPair,
  privateKeyFromPem,
  privateKeyToPem,
  SIGN_SHA256,
  x509,
} from '../../src/pki/keys.ts'
import { type Harness, OPERATOR, rejectsWith, startHarness } from './harness.ts'

async function clientCertificate(home: string, cn: string) {
  const caCert = new x509.X509Certificate(await readFile(join(home, 'pki', 'ca.crt'), 'utf8'))
  const caKey = await privateKeyFromPem(await readFile(join(home, 'pki', 'ca.key'), 'utf8'))
  const keys = await generateEcKeyPair()
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex'),
    subject: `CN=${cn}, O=Dflare`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
    ],
  })
  return { cert: cert.toString('pem'), key: await privateKeyToPem(keys.privateKey) }
}

describe('service account authentication: private_key_jwt and mTLS', () => {
  let h: Harness
  before(async () => {
    h = await startHarness({}, { requestCert: true })
    await createRealm(h.iam.admin, OPERATOR, { id: 'acme', mfaPolicy: 'none' })
  })
  after(() => h.close())

  test('private_key_jwt: a signed assertion authenticates; another key does not', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const jwk = { ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig', kid: 'k1' }
    await createClient(h.iam.admin, OPERATOR, 'acme', {
      clientId: 'robot',
      name: 'robot',
      serviceAccount: true,
      authMethod: 'private_key_jwt',
      jwks: { keys: [jwk] },
    })
    const config = await h.discover(
      'acme',
      'robot',
      client.PrivateKeyJwt({ key: privateKey, kid: 'k1' }),
    )
    const tokens = await client.clientCredentialsGrant(config, { scope: 'api' })
    assert.equal((await h.iam.service.verifyAccessToken(tokens.access_token, 'acme')).sub, 'robot')
    const other = await generateKeyPair('ES256')
    const bad = await h.discover(
      'acme',
      'robot',
      client.PrivateKeyJwt({ key: other.privateKey, kid: 'k1' }),
    )
    await rejectsWith(client.clientCredentialsGrant(bad, { scope: 'api' }), 'invalid_client')
  })

  test('tls_client_auth: the client certificate with the registered subject authenticates', async () => {
    await createClient(h.iam.admin, OPERATOR, 'acme', {
      clientId: 'node-agent',
      name: 'node agent',
      serviceAccount: true,
      authMethod: 'tls_client_auth',
      tlsSubjectDn: 'CN=node-agent,O=Dflare',
    })
    const good = caFetch(h.ca, { clientCert: await clientCertificate(h.home, 'node-agent') })
    const wrong = caFetch(h.ca, { clientCert: await clientCertificate(h.home, 'intruder') })
    try {
      const discover = (f: typeof good) =>
        client.discovery(h.issuer('acme'), 'node-agent', undefined, client.TlsClientAuth(), {
          [client.customFetch]: f,
        })
      const tokens = await client.clientCredentialsGrant(await discover(good), { scope: 'api' })
      assert.equal(
        (await h.iam.service.verifyAccessToken(tokens.access_token, 'acme')).sub,
        'node-agent',
      )
      await rejectsWith(
        client.clientCredentialsGrant(await discover(wrong), { scope: 'api' }),
        'invalid_client',
      )
      await rejectsWith(
        client.clientCredentialsGrant(await discover(h.fetch), { scope: 'api' }),
        'invalid_client',
      )
    } finally {
      good.close()
      wrong.close()
    }
  })
})
