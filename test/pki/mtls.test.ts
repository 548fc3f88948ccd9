import assert from 'node:assert/strict'
import { type ChildProcess, fork } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import tls from 'node:tls'
import { systemClock } from '../../src/core/clock.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { createCsr } from '../../src/pki/csr.ts'
import { generateEcKeyPair, privateKeyToPem, x509 } from '../../src/pki/keys.ts'
import { mtlsPrincipal } from '../../src/pki/peer-principal.ts'
import { CrlChecker } from '../../src/pki/revocation.ts'
import { mtlsClientOptions, serverTlsOptions, type TlsIdentity } from '../../src/pki/tls-policy.ts'
import { pkiFixture, pkiHttpServer, tempDir, testKek } from './helpers.ts'

/**
 * Components in separate processes talking over mTLS: the PKI (this process) issues the
 * certificates and serves the CRL; `authz` runs as a child mTLS server that only admits
 * `component/gateway`; `gateway` runs as a child mTLS client.
 */
const NODE = join(import.meta.dirname, 'fixtures', 'mtls-node.ts')
const TD = 'spiffe://dflare.local/component'
const CRL_REFRESH_MS = 300

let f: Awaited<ReturnType<typeof pkiFixture>>
let pkiHttp: Awaited<ReturnType<typeof pkiHttpServer>>
let authz: Child
let authzUrl: string
let authzHome: Awaited<ReturnType<typeof tempDir>>
const children: Child[] = []

class Child {
  readonly proc: ChildProcess
  readonly #waiting: ((m: Record<string, unknown>) => void)[] = []
  readonly ready: Promise<Record<string, unknown>>
  constructor(config: unknown) {
    this.proc = fork(NODE, [JSON.stringify(config)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.ready = this.#next()
    this.proc.on('message', (m) => this.#waiting.shift()?.(m as Record<string, unknown>))
    children.push(this)
  }
  #next() {
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      this.#waiting.push(resolve)
      this.proc.once('exit', (code) => reject(new Error(`child exited with ${code}`)))
    })
  }
  async call(m: Record<string, unknown>) {
    const reply = this.#next()
    this.proc.send(m)
    const r = await reply
    if (r.ok === false) throw new Error(String(r.error))
    return r
  }
}

async function identityFor(name: string): Promise<TlsIdentity> {
  const r = await f.service.issueComponent({ name })
  return { cert: r.chainPem, key: r.keyPem!, ca: f.ca.rootPem }
}

/** One request from this process with the given client identity (or none). */
function requestWith(
  url: string,
  identity: Partial<TlsIdentity> & { ca: string },
  extra: https.RequestOptions = {},
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.get(
      url,
      {
        agent: false,
        ca: identity.ca,
        cert: identity.cert,
        key: identity.key,
        checkServerIdentity: () => undefined,
        ...extra,
      },
      (res) => {
        let body = ''
        res.on('data', (c) => {
          body += c
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      },
    )
    req.on('error', reject)
  })
}

before(async () => {
  f = await pkiFixture({ clock: systemClock, crlValidity: 3_600_000 })
  pkiHttp = await pkiHttpServer(f.service)
  // authz starts from files, as `dflare pki issue --component authz --out DIR` writes them.
  authzHome = await tempDir()
  const first = await identityFor('authz')
  await writeFile(join(authzHome.dir, 'cert.pem'), first.cert)
  await writeFile(join(authzHome.dir, 'key.pem'), first.key, { mode: 0o600 })
  await writeFile(join(authzHome.dir, 'ca.crt'), first.ca)
  authz = new Child({
    role: 'server',
    identityDir: authzHome.dir,
    pkiUrl: pkiHttp.url,
    allowed: [`${TD}/gateway`],
    crlRefreshMs: CRL_REFRESH_MS,
  })
  authzUrl = `https://127.0.0.1:${(await authz.ready).ready}/whoami`
})

after(async () => {
  for (const c of children) c.proc.kill()
  await pkiHttp?.close()
  await f?.close()
  await authzHome?.cleanup()
})

test('a component in another process calls over mTLS and each side checks the other', async () => {
  const gateway = new Child({
    role: 'client',
    identity: await identityFor('gateway'),
    pkiUrl: pkiHttp.url,
    expectedServer: [`${TD}/authz`],
  })
  await gateway.ready
  const r = await gateway.call({ op: 'get', url: authzUrl })
  assert.equal(r.status, 200)
  assert.equal(JSON.parse(String(r.body)).peer, `${TD}/gateway`)

  // The client refuses a server that is not the identity it expects.
  const wrongExpectation = new Child({
    role: 'client',
    identity: await identityFor('gateway'),
    pkiUrl: pkiHttp.url,
    expectedServer: [`${TD}/audit`],
  })
  await wrongExpectation.ready
  await assert.rejects(wrongExpectation.call({ op: 'get', url: authzUrl }), /SPIFFE|identity/)
})

test('refused: no certificate, another CA, expired, disallowed identity', async () => {
  const ca = f.ca.rootPem
  await assert.rejects(requestWith(authzUrl, { ca }), 'no client certificate')

  const other = await tempDir()
  try {
    const foreign = await openCa({ dir: join(other.dir, 'pki'), kek: testKek() })
    const keys = await generateEcKeyPair()
    const now = Date.now()
    // Same SPIFFE id as the allowed caller, but from a CA this system does not trust.
    const forged = await foreign.ca.issue(
      { kind: 'service', spiffeId: `${TD}/gateway` },
      keys.publicKey,
      {
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + 3_600_000),
      },
    )
    const key = await privateKeyToPem(keys.privateKey)
    await assert.rejects(requestWith(authzUrl, { ca, cert: forged.chainPem, key }), 'another CA')

    // Expired: issued by our own CA for the allowed identity, validity in the past.
    const expired = await f.ca.issue(
      { kind: 'service', spiffeId: `${TD}/gateway` },
      keys.publicKey,
      {
        notBefore: new Date(now - 7_200_000),
        notAfter: new Date(now - 3_600_000),
      },
    )
    await assert.rejects(requestWith(authzUrl, { ca, cert: expired.chainPem, key }), 'expired')
  } finally {
    await other.cleanup()
  }

  // A valid certificate of this CA, but an identity authz does not admit.
  await assert.rejects(requestWith(authzUrl, await identityFor('iam')), 'identity not allowed')
  // The admitted identity works from this process too.
  assert.equal((await requestWith(authzUrl, await identityFor('gateway'))).status, 200)
})

test('a revoked certificate is refused once the CRL refresh picks it up', async () => {
  const id = await identityFor('gateway')
  assert.equal((await requestWith(authzUrl, id)).status, 200)
  // A connection kept alive from before the revocation must not outlive it.
  const agent = new https.Agent({ keepAlive: true, ...id, checkServerIdentity: () => undefined })
  const kept = await new Promise<import('node:net').Socket>((resolve, reject) => {
    https
      .get(authzUrl, { agent }, (res) => {
        const socket = res.socket
        res.resume()
        res.on('end', () => resolve(socket))
      })
      .on('error', reject)
  })
  let keptClosed = false
  kept.once('close', () => {
    keptClosed = true
  })
  const serial = (await f.service.list({ spiffeId: `${TD}/gateway`, status: 'valid' }))[0]!.serial
  await f.service.revoke(serial, 'keyCompromise')
  // The server refreshes every CRL_REFRESH_MS; poll (bounded) until it refuses.
  let refused = false
  for (let i = 0; i < 200 && !refused; i++) {
    await new Promise((r) => setTimeout(r, CRL_REFRESH_MS / 2))
    refused = await requestWith(authzUrl, id).then(
      (r) => r.status !== 200,
      () => true,
    )
  }
  assert.ok(refused, 'revoked certificate refused after a CRL refresh')
  for (let i = 0; i < 20 && !keptClosed; i++)
    await new Promise((r) => setTimeout(r, CRL_REFRESH_MS / 2))
  assert.ok(keptClosed, 'the kept-alive connection of the revoked peer was closed')
  agent.destroy()
  // Other gateway certificates are unaffected.
  assert.equal((await requestWith(authzUrl, await identityFor('gateway'))).status, 200)
})

test('TLS 1.1 is refused by the mTLS listener and by the PKI HTTPS listener', async () => {
  const id = await identityFor('gateway')
  // Control: this client really can speak TLS 1.1 to a server that allows it.
  const lax = tls.createServer(
    { cert: id.cert, key: id.key, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' },
    (c) => c.end(),
  )
  await new Promise<void>((r) => lax.listen(0, '127.0.0.1', r))
  const laxUrl = `https://127.0.0.1:${(lax.address() as AddressInfo).port}/`
  const handshake11 = (url: string) => {
    const u = new URL(url)
    return new Promise<Error | undefined>((resolve) => {
      const socket = tls.connect({
        host: u.hostname,
        port: Number(u.port),
        ca: id.ca,
        cert: id.cert,
        key: id.key,
        minVersion: 'TLSv1',
        maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT@SECLEVEL=0',
        checkServerIdentity: () => undefined,
      })
      socket.on('secureConnect', () => {
        socket.destroy()
        resolve(undefined)
      })
      socket.on('error', resolve)
    })
  }
  try {
    assert.equal(await handshake11(laxUrl), undefined, 'control: TLS 1.1 client works')
  } finally {
    lax.close()
  }
  for (const url of [authzUrl, `${pkiHttp.url}/pki/ca`])
    assert.ok(await handshake11(url), `${url}: TLS 1.1 handshake must fail`)
  // And TLS 1.3 is what two Dflare endpoints negotiate.
  const version = await new Promise<string | null>((resolve, reject) => {
    const u = new URL(authzUrl)
    const s = tls.connect({
      host: u.hostname,
      port: Number(u.port),
      ...id,
      checkServerIdentity: () => undefined,
    })
    s.on('secureConnect', () => {
      resolve(s.getProtocol())
      s.destroy()
    })
    s.on('error', reject)
  })
  assert.equal(version, 'TLSv1.3')
})

test('rotation under load: server and client certificates renew without losing a request', async () => {
  const gateway = new Child({
    role: 'client',
    identity: await identityFor('gateway'),
    pkiUrl: pkiHttp.url,
    expectedServer: [`${TD}/authz`],
  })
  await gateway.ready
  await gateway.call({ op: 'loop', url: authzUrl })
  const serials = new Set<string>()
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 150))
    serials.add(String((await authz.call({ op: 'rotate' })).serial))
    await new Promise((r) => setTimeout(r, 150))
    await gateway.call({ op: 'rotate' })
  }
  await new Promise((r) => setTimeout(r, 150))
  const stats = await gateway.call({ op: 'stop-loop' })
  assert.deepEqual(stats.errors, [])
  assert.equal(stats.failed, 0)
  assert.ok(Number(stats.succeeded) > 0)
  assert.equal(serials.size, 3)
  // Requests were served under more than one server certificate (hot reload took effect).
  assert.ok((stats.serverSerials as string[]).length >= 2)
  // …and under more than one client certificate (the agent picked up the client's renewals).
  assert.ok((stats.peerSerials as string[]).length >= 2)
  // Renewals went through proof of possession and are linked in the inventory.
  const authzCerts = await f.service.list({ spiffeId: `${TD}/authz` })
  assert.ok(authzCerts.filter((c) => c.renewedFrom).length >= 3)
  // The renewed certificate and key were written back, so a restart resumes from them.
  const last = [...serials].at(-1)!
  let onDisk = ''
  for (let i = 0; i < 50 && onDisk !== last; i++) {
    await new Promise((r) => setTimeout(r, 100))
    const cert = new x509.X509Certificate(await readFile(join(authzHome.dir, 'cert.pem'), 'utf8'))
    onDisk = cert.serialNumber.toLowerCase()
  }
  assert.equal(onDisk, last)
})

test('the gateway identifies mTLS callers as service principals of the right realm', async () => {
  const checker = new CrlChecker({
    rootPem: f.ca.rootPem,
    refreshMs: 60_000,
    source: async () => ({ crl: (await f.service.crl()).der, issuers: f.ca.chainPem }),
  })
  await checker.refresh()
  const identify = mtlsPrincipal({ trustDomain: 'dflare.local', revocation: checker })
  const server = tls.createServer(
    {
      ...serverTlsOptions(await identityFor('gateway')),
      ca: f.ca.rootPem,
      requestCert: true,
      rejectUnauthorized: false,
    },
    (socket) => socket.end(JSON.stringify(identify(socket) ?? null)),
  )
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  const ask = (id: Partial<TlsIdentity>) =>
    new Promise<Record<string, unknown> | null>((resolve, reject) => {
      let data = ''
      const s = tls.connect({
        host: '127.0.0.1',
        port,
        ca: f.ca.rootPem,
        cert: id.cert,
        key: id.key,
        checkServerIdentity: () => undefined,
      })
      s.on('data', (d) => {
        data += d
      })
      s.on('end', () => resolve(JSON.parse(data)))
      s.on('error', reject)
    })
  try {
    const component = await ask(await identityFor('audit'))
    assert.equal(component?.realm, 'platform')
    assert.deepEqual(component?.uid, {
      type: 'Dflare::ServiceAccount',
      id: 'platform/spiffe:component/audit',
    })
    assert.equal(component?.via, 'mtls')

    const keys = await generateEcKeyPair()
    const workload = await f.service.issueFromCsr(
      { identity: 'spiffe://dflare.local/tenant/acme/node/gpu-01', csr: await createCsr(keys) },
      {
        actor: { kind: 'system', id: 'test' },
        tenant: 'platform',
        principal: { type: 'Dflare::Service', id: 'test' },
      },
    )
    const w = await ask({ cert: workload.chainPem, key: await privateKeyToPem(keys.privateKey) })
    assert.equal(w?.realm, 'acme')
    assert.deepEqual(w?.uid, { type: 'Dflare::ServiceAccount', id: 'acme/spiffe:node/gpu-01' })

    assert.equal(await ask({}), null, 'no certificate: no principal')
    const other = await tempDir()
    try {
      const foreign = await openCa({ dir: join(other.dir, 'pki'), kek: testKek() })
      const fk = await generateEcKeyPair()
      const forged = await foreign.ca.issue(
        { kind: 'service', spiffeId: `${TD}/gateway` },
        fk.publicKey,
        {
          notBefore: new Date(Date.now() - 60_000),
          notAfter: new Date(Date.now() + 3_600_000),
        },
      )
      assert.equal(
        await ask({ cert: forged.chainPem, key: await privateKeyToPem(fk.privateKey) }),
        null,
        'foreign CA',
      )
    } finally {
      await other.cleanup()
    }
    await f.service.revoke(workload.certificate.serial, 'keyCompromise')
    await checker.refresh()
    assert.equal(
      await ask({ cert: workload.chainPem, key: await privateKeyToPem(keys.privateKey) }),
      null,
      'revoked',
    )
  } finally {
    server.close()
  }
})

test('mtlsClientOptions: presents the SVID and accepts only the expected server identity', async () => {
  const id = await identityFor('gateway')
  const u = new URL(authzUrl)
  const connect = (expectedServer: string[]) =>
    new Promise<string | null>((resolve, reject) => {
      const s = tls.connect({
        ...mtlsClientOptions(id, { expectedServer }),
        host: u.hostname,
        port: Number(u.port),
      })
      s.once('secureConnect', () => {
        resolve(s.getProtocol())
        s.destroy()
      })
      s.once('error', reject)
    })
  assert.equal(await connect([`${TD}/authz`]), 'TLSv1.3')
  await assert.rejects(connect([`${TD}/audit`]), /expected SPIFFE/)
})
