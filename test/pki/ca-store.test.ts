import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import tls from 'node:tls'
import {
  caPaths,
  exportRoot,
  importRoot,
  openCa,
  removeRoot,
  rotateIntermediate,
} from '../../src/pki/ca-store.ts'
import { Kek, loadKek } from '../../src/pki/kek.ts'
import { generateEcKeyPair, privateKeyToPem, x509 } from '../../src/pki/keys.ts'
import { ensureServerTls, reloadServerTls } from '../../src/pki/server-identity.ts'
import { serverTlsOptions } from '../../src/pki/tls-policy.ts'
import { tempDir, testKek } from './helpers.ts'

test('first boot creates root and intermediate with keys sealed under the KEK', async () => {
  const t = await tempDir()
  try {
    const dir = join(t.dir, 'pki')
    const { ca, rootOnline } = await openCa({ dir, kek: testKek() })
    assert.equal(rootOnline, true)
    const p = caPaths(dir)
    for (const f of [p.rootCert, p.rootKey, p.intermediateCert, p.intermediateKey])
      assert.ok(existsSync(f), f)
    assert.equal((await stat(p.rootKey)).mode & 0o777, 0o600)
    const sealed = await readFile(p.intermediateKey, 'utf8')
    assert.doesNotMatch(sealed, /PRIVATE KEY/)
    assert.ok(await ca.intermediate.verify({ publicKey: ca.root }))
    const bc = ca.intermediate.getExtension(x509.BasicConstraintsExtension)!
    assert.equal(bc.ca, true)
    assert.equal(bc.pathLength, 0)
    // Reopening reuses the same CA.
    const again = await openCa({ dir, kek: testKek() })
    assert.equal(again.ca.intermediate.serialNumber, ca.intermediate.serialNumber)
    // A different KEK cannot open it, and says so without leaking anything.
    await assert.rejects(
      openCa({ dir, kek: new Kek(Buffer.alloc(32, 9), 'env') }),
      /different key-encryption key/,
    )
    // Tampering with a sealed key is detected.
    const box = JSON.parse(sealed)
    box.ct = Buffer.from(
      Buffer.from(box.ct, 'base64').map((b, i) => (i === 5 ? b ^ 1 : b)),
    ).toString('base64')
    await writeFile(p.intermediateKey, JSON.stringify(box))
    await assert.rejects(openCa({ dir, kek: testKek() }), /failed authentication/)
  } finally {
    await t.cleanup()
  }
})

test('the root can be exported, removed and imported; issuance continues offline', async () => {
  const t = await tempDir()
  try {
    const dir = join(t.dir, 'pki')
    const kek = testKek()
    await openCa({ dir, kek })
    const pem = await exportRoot(dir, kek, 'correct horse battery')
    assert.match(pem, /BEGIN ENCRYPTED PRIVATE KEY/)
    assert.equal(await removeRoot(dir), true)
    assert.equal(existsSync(caPaths(dir).rootKey), false)
    const offline = await openCa({ dir, kek })
    assert.equal(offline.rootOnline, false)
    const keys = await generateEcKeyPair()
    const now = new Date()
    const leaf = await offline.ca.issue(
      { kind: 'service', spiffeId: 'spiffe://dflare.local/component/iam' },
      keys.publicKey,
      {
        notBefore: now,
        notAfter: new Date(now.getTime() + 3_600_000),
      },
    )
    assert.ok(await leaf.cert.verify({ publicKey: offline.ca.intermediate }))
    await assert.rejects(rotateIntermediate(dir, kek), /offline/)
    await assert.rejects(exportRoot(dir, kek, 'correct horse battery'), /not on this system/)
    await assert.rejects(importRoot(dir, kek, pem, 'wrong passphrase!!'), /cannot decrypt/)
    const other = await privateKeyToPem((await generateEcKeyPair()).privateKey)
    await assert.rejects(importRoot(dir, kek, other, 'x'), /does not belong|cannot decrypt/)
    await importRoot(dir, kek, pem, 'correct horse battery')
    const rotated = await rotateIntermediate(dir, kek)
    assert.notEqual(rotated.serialNumber, offline.ca.intermediate.serialNumber)
  } finally {
    await t.cleanup()
  }
})

test('an intermediate near expiry is renewed while the root is online', async () => {
  const t = await tempDir()
  try {
    const dir = join(t.dir, 'pki')
    const start = new Date('2026-01-01T00:00:00Z')
    const first = await openCa({ dir, kek: testKek(), now: start })
    const later = new Date(start.getTime() + 300 * 86_400_000)
    const second = await openCa({ dir, kek: testKek(), now: later })
    assert.notEqual(second.ca.intermediate.serialNumber, first.ca.intermediate.serialNumber)
    await removeRoot(dir)
    const muchLater = new Date(start.getTime() + 600 * 86_400_000)
    const third = await openCa({ dir, kek: testKek(), now: muchLater })
    assert.equal(third.ca.intermediate.serialNumber, second.ca.intermediate.serialNumber)
    assert.match(third.notices.join(), /root key/)
  } finally {
    await t.cleanup()
  }
})

test('ensureServerTls keeps its contract and upgrades the first-boot layout', async () => {
  const t = await tempDir()
  try {
    const dir = join(t.dir, 'pki')
    // Layout written by the first version: plaintext ca.key next to ca.crt.
    const keys = await generateEcKeyPair()
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=Old Root',
      keys,
      notBefore: new Date(Date.now() - 1000),
      notAfter: new Date(Date.now() + 86_400_000 * 3650),
      extensions: [new x509.BasicConstraintsExtension(true, 1, true)],
    })
    const { mkdir } = await import('node:fs/promises')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'ca.crt'), root.toString('pem'))
    await writeFile(join(dir, 'ca.key'), await privateKeyToPem(keys.privateKey), { mode: 0o600 })
    const tls = await ensureServerTls({ dir, hosts: ['127.0.0.1', 'localhost'] })
    assert.equal(tls.caPath, join(dir, 'ca.crt'))
    assert.equal(tls.ca, root.toString('pem'))
    assert.equal(existsSync(join(dir, 'ca.key')), false, 'plaintext root key removed')
    assert.ok(existsSync(join(t.dir, 'kek')), 'KEK generated under $DFLARE_HOME')
    assert.equal((await stat(join(t.dir, 'kek'))).mode & 0o777, 0o600)
    const certs = tls.cert.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!
    assert.equal(certs.length, 2, 'leaf followed by intermediate')
    const leaf = new x509.X509Certificate(certs[0]!)
    const chain = await new x509.X509ChainBuilder({
      certificates: [new x509.X509Certificate(certs[1]!), root],
    }).build(leaf)
    assert.equal(chain.length, 3)
    // Idempotent: same certificate on the next start.
    const again = await ensureServerTls({ dir, hosts: ['127.0.0.1'] })
    assert.equal(again.serial, tls.serial)
    // A new host forces re-issue.
    const more = await ensureServerTls({ dir, hosts: ['127.0.0.1', 'dflare.example'] })
    assert.notEqual(more.serial, tls.serial)
  } finally {
    await t.cleanup()
  }
})

test('KEK file must be private and well-formed', async () => {
  const t = await tempDir()
  try {
    const f = join(t.dir, 'kek-file')
    await writeFile(f, Buffer.alloc(32, 1).toString('base64'), { mode: 0o644 })
    await assert.rejects(loadKek({ kekFile: f }, t.dir), /group or others/)
    await writeFile(f, 'c2hvcnQ=', { mode: 0o600 })
    const { chmod } = await import('node:fs/promises')
    await chmod(f, 0o600)
    await assert.rejects(loadKek({ kekFile: f }, t.dir), /32 bytes/)
    const fromEnv = await loadKek({ kek: Buffer.alloc(32, 2).toString('base64') }, t.dir)
    assert.equal(fromEnv.origin, 'env')
    const generated = await loadKek({}, t.dir)
    assert.equal(generated.origin, 'generated')
    assert.equal((await loadKek({}, t.dir)).id, generated.id)
  } finally {
    await t.cleanup()
  }
})

test('the listener certificate is renewed and hot-reloaded without dropping open connections', async () => {
  const t = await tempDir()
  try {
    const dir = join(t.dir, 'pki')
    const kek = testKek()
    const first = await ensureServerTls({ dir, hosts: ['127.0.0.1'], kek })
    const server = tls.createServer(serverTlsOptions({ cert: first.cert, key: first.key }), (s) =>
      s.pipe(s),
    )
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as AddressInfo).port
    const connect = () =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, ca: first.ca })
        sockets.push(s)
        s.once('secureConnect', () => resolve(s))
        s.once('error', reject)
      })
    const sockets: tls.TLSSocket[] = []
    const serialOf = (s: tls.TLSSocket) =>
      s.getPeerCertificate().serialNumber.toLowerCase().replace(/^0+/, '')
    try {
      const before = await connect()
      assert.equal(serialOf(before), first.serial)
      // Re-issued (here because a host was added; likewise past renewAt) and installed.
      const next = await reloadServerTls(server, first, {
        dir,
        hosts: ['127.0.0.1', 'localhost'],
        kek,
      })
      assert.notEqual(next.serial, first.serial)
      const after = await connect()
      assert.equal(serialOf(after), next.serial)
      // The connection opened before the reload still works.
      const echoed = await new Promise<string>((resolve) => {
        before.once('data', (d) => resolve(d.toString()))
        before.write('still here')
      })
      assert.equal(echoed, 'still here')
      before.destroy()
      after.destroy()
    } finally {
      for (const s of sockets) s.destroy()
      server.close()
    }
  } finally {
    await t.cleanup()
  }
})

test('a reloaded listener certificate keeps verifying client certificates (mTLS principals)', async () => {
  const t = await tempDir()
  try {
    const dir = join(t.dir, 'pki')
    const kek = testKek()
    const first = await ensureServerTls({ dir, hosts: ['127.0.0.1'], kek })
    const server = tls.createServer(
      {
        ...serverTlsOptions({ cert: first.cert, key: first.key }),
        ca: first.chain,
        requestCert: true,
        rejectUnauthorized: false,
      },
      (s) => s.end(String(s.authorized)),
    )
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as AddressInfo).port
    const { ca } = await openCa({ dir, kek })
    const keys = await generateEcKeyPair()
    const client = await ca.issue(
      { kind: 'service', spiffeId: 'spiffe://dflare.local/component/gateway' },
      keys.publicKey,
      { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3_600_000) },
    )
    const key = await privateKeyToPem(keys.privateKey)
    const authorized = () =>
      new Promise<string>((resolve, reject) => {
        let out = ''
        // The client presents its leaf only: the server's CA bundle must hold the intermediate.
        const s = tls.connect({
          host: '127.0.0.1',
          port,
          ca: first.ca,
          cert: client.cert.toString('pem'),
          key,
        })
        s.on('data', (d) => {
          out += d
        })
        s.on('end', () => resolve(out))
        s.on('error', reject)
      })
    try {
      assert.equal(await authorized(), 'true')
      await reloadServerTls(server, first, {
        dir,
        hosts: ['127.0.0.1', 'localhost'],
        kek,
        clientCa: true,
      })
      assert.equal(await authorized(), 'true', 'still verified after the reload')
    } finally {
      server.close()
    }
  } finally {
    await t.cleanup()
  }
})
