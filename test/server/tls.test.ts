import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type ConnectionOptions, connect } from 'node:tls'
import { startTestServer, type TestServer } from '../support/server.ts'

function handshake(
  server: TestServer,
  options: ConnectionOptions,
): Promise<{ protocol: string | null; cipher: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port: Number(server.url.port),
      ca: server.caPem,
      ...options,
    })
    socket.once('secureConnect', () => {
      const result = { protocol: socket.getProtocol(), cipher: socket.getCipher().name }
      socket.end()
      resolve(result)
    })
    socket.once('error', reject)
  })
}

describe('TLS policy of the HTTPS listener', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer()
  })
  after(() => server.close())

  it('negotiates TLS 1.3 by default', async () => {
    const r = await handshake(server, {})
    assert.equal(r.protocol, 'TLSv1.3')
  })

  it('accepts TLS 1.2 with an AEAD ECDHE suite only', async () => {
    const r = await handshake(server, { maxVersion: 'TLSv1.2' })
    assert.equal(r.protocol, 'TLSv1.2')
    assert.match(r.cipher, /^ECDHE-(ECDSA|RSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/)
  })

  it('refuses a TLS 1.2 client offering only non-AEAD or non-ECDHE suites', async () => {
    for (const ciphers of ['ECDHE-ECDSA-AES128-SHA256', 'AES128-GCM-SHA256'])
      await assert.rejects(handshake(server, { maxVersion: 'TLSv1.2', ciphers }))
  })

  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    it(`refuses a ${version} client`, async () => {
      // SECLEVEL=0 lets OpenSSL 3 actually offer the old protocol, so the refusal is the server's.
      await assert.rejects(
        handshake(server, {
          minVersion: version,
          maxVersion: version,
          ciphers: 'DEFAULT@SECLEVEL=0',
        }),
        /version|protocol|alert/i,
      )
    })
  }

  it('is not trusted by a client that does not know the internal CA', async () => {
    await assert.rejects(
      handshake(server, { ca: undefined }),
      /self-signed|unable to verify|certificate/i,
    )
  })
})
