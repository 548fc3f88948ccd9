import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import https from 'node:https'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type tls from 'node:tls'
import { openCa } from '../../src/pki/ca-store.ts'
import { Kek, loadKek } from '../../src/pki/kek.ts'
import { generateEcKeyPair, privateKeyToPem } from '../../src/pki/keys.ts'
import { spiffeIdOfAltNames } from '../../src/pki/spiffe.ts'
import { MtlsAgent, serverIdentityCheck, type TlsIdentity } from '../../src/pki/tls-policy.ts'
import { runCli } from '../support/cli.ts'
import { createPostgresDatabase, testDatabaseUrl } from '../support/db.ts'
import { httpsRequest } from '../support/https.ts'
import { type ServeProcess, startDflare } from '../support/serve.ts'
import { tempHome } from '../support/server.ts'

/**
 * The control plane as separate processes (`dflare serve`), on one PostgreSQL:
 *   A = pki, iam, audit     B = authz     C = gateway (and the resource API)
 * A token from A, an API call on C, the decision from B over mTLS, the event in A's audit log;
 * the internal listeners refuse every peer that is not a current, unrevoked, allow-listed
 * identity of this CA; certificates rotate under load without losing a request.
 */
const TD = 'spiffe://dflare.local/component'
const AUTHZ_SNI = 'authz.dflare.local'
const DECIDE = {
  principal: { type: 'Dflare::ServiceAccount', id: 'platform/nobody' },
  action: { type: 'Dflare::Action', id: 'cluster.list' },
  resource: { type: 'Dflare::Tenant', id: 'platform' },
  context: {},
}
interface AuditedEvent {
  type: string
  action: string
  outcome: string
  details: { status: number; policies: string[] }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Answer {
  status: number
  body: string
  serverSerial: string
  serverSan: string | undefined
}

/** One request on a new connection to an internal listener, with the given client identity. */
function internalCall(
  url: URL,
  options: {
    identity?: Partial<TlsIdentity>
    ca: string
    servername?: string
    path?: string
    body?: unknown
    minVersion?: tls.SecureVersion
    maxVersion?: tls.SecureVersion
  },
): Promise<Answer> {
  const payload = JSON.stringify(options.body ?? DECIDE)
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(options.path ?? '/internal/v1/authz/decide', url),
      {
        method: 'POST',
        agent: false,
        ca: options.ca,
        cert: options.identity?.cert,
        key: options.identity?.key,
        servername: options.servername,
        minVersion: options.minVersion,
        maxVersion: options.maxVersion,
        ciphers: options.maxVersion === 'TLSv1.1' ? 'DEFAULT@SECLEVEL=0' : undefined,
        checkServerIdentity: () => undefined,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const peer = (res.socket as tls.TLSSocket).getPeerCertificate()
        let body = ''
        res.on('data', (c) => {
          body += c
        })
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            serverSerial: peer.serialNumber?.toLowerCase(),
            serverSan: peer.subjectaltname,
          }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

async function readIdentity(dir: string): Promise<TlsIdentity> {
  const [cert, key, ca] = await Promise.all(
    ['cert.pem', 'key.pem', 'ca.crt'].map((f) => readFile(join(dir, f), 'utf8')),
  )
  return { cert: cert!, key: key!, ca: ca! }
}

const staticSource = (identity: TlsIdentity) => ({
  current: () => identity,
  onChange: () => () => {},
})

describe('components in separate processes (dflare serve)', {
  skip: testDatabaseUrl
    ? false
    : 'needs PostgreSQL: set DFLARE_TEST_DATABASE_URL (processes cannot share the embedded database)',
}, () => {
  let database: Awaited<ReturnType<typeof createPostgresDatabase>>
  const homes: Awaited<ReturnType<typeof tempHome>>[] = []
  const processes: ServeProcess[] = []
  let a: ServeProcess
  let b: ServeProcess
  let c: ServeProcess
  let homeA: string
  let ca: string
  let token: string
  let clients: string

  const cli = (args: string[]) => runCli(args, { DFLARE_HOME: homeA, DATABASE_URL: database.url })
  /** `dflare pki issue` on the PKI host; returns the serial. */
  async function issue(component: string, out: string, hosts: string[] = []) {
    const r = await cli([
      'pki',
      'issue',
      '--component',
      component,
      '--out',
      out,
      '--json',
      ...(hosts.length ? ['--host', ...hosts] : []),
    ])
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout).serial as string
  }
  async function home() {
    const h = await tempHome()
    homes.push(h)
    return h.path
  }
  async function serve(components: string, env: Record<string, string>) {
    const p = await startDflare(['serve', '--components', components], {
      DATABASE_URL: database.url,
      DFLARE_LISTEN: 'https://127.0.0.1:0',
      DFLARE_INTERNAL_LISTEN: 'https://127.0.0.1:0',
      DFLARE_PKI_CRL_REFRESH: '1s',
      ...env,
    })
    processes.push(p)
    return p
  }
  const api = (path: string, init: { method?: string; body?: unknown; cid?: string } = {}) =>
    httpsRequest(new URL(path, c.url), {
      method: init.method ?? 'GET',
      ca,
      headers: {
        authorization: `Bearer ${token}`,
        ...(init.cid ? { 'x-correlation-id': init.cid } : {}),
        ...(init.body ? { 'content-type': 'application/json' } : {}),
      },
      body: init.body ? JSON.stringify(init.body) : undefined,
    })

  before(async () => {
    database = await createPostgresDatabase()
    homeA = await home()
    a = await serve('pki,iam,audit', { DFLARE_HOME: homeA })
    ca = await readFile(join(homeA, 'pki', 'ca.crt'), 'utf8')

    const homeB = await home()
    await issue('authz', join(homeB, 'identity', 'authz'), ['127.0.0.1'])
    b = await serve('authz', { DFLARE_HOME: homeB, DFLARE_PEER_PKI: a.url.origin })

    const homeC = await home()
    await issue('gateway', join(homeC, 'identity', 'gateway'), ['127.0.0.1'])
    c = await serve('gateway', {
      DFLARE_HOME: homeC,
      DFLARE_PEER_PKI: a.url.origin,
      DFLARE_PEER_IAM: a.internalUrl!.origin,
      DFLARE_PEER_AUDIT: a.internalUrl!.origin,
      DFLARE_PEER_AUTHZ: b.internalUrl!.origin,
      DFLARE_RATE_LIMIT_PRINCIPAL: '1000000',
      DFLARE_RATE_LIMIT_TENANT: '1000000',
    })
    // B and C are ready once they have loaded the CRL from A (and C has reached iam).
    for (const p of [b, c])
      for (let i = 0; ; i++) {
        const r = await httpsRequest(new URL('/readyz', p.url), { ca })
        if (r.status === 200) break
        assert.ok(i < 300, `pid ${p.pid} ready: ${r.body}`)
        await sleep(100)
      }

    const boot = JSON.parse(await readFile(join(homeA, 'bootstrap.json'), 'utf8'))
    const basic = Buffer.from(`${boot.client_id}:${boot.client_secret}`).toString('base64')
    const t = await httpsRequest(`${boot.issuer}/token`, {
      method: 'POST',
      ca,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${basic}`,
      },
      body: 'grant_type=client_credentials&scope=api',
    })
    assert.equal(t.status, 200, t.body)
    token = t.json().access_token
    clients = await home()
  })

  after(async () => {
    for (const p of processes.reverse()) await p.stop()
    await database?.drop()
    for (const h of homes) await h.remove()
  })

  it('a token from A, an API call on C, the decision from B, the event in the audit log on A', async () => {
    assert.equal(a.internalUrl !== undefined && b.internalUrl !== undefined, true)
    assert.equal(c.internalUrl, undefined, 'the gateway serves no other component')
    const created = await api('/api/v1/tenants/platform/clusters', {
      method: 'POST',
      body: { name: 'split-1' },
      cid: 'serve-e2e-create-1',
    })
    assert.equal(created.status, 201, created.body)
    const listed = await api('/api/v1/tenants/platform/clusters')
    assert.equal(listed.status, 200)
    assert.ok(listed.json().items.some((i: { name: string }) => i.name === 'split-1'))

    // Unauthenticated and forged tokens are refused at C (verified by iam on A).
    const anonymous = await httpsRequest(new URL('/api/v1/tenants/platform/clusters', c.url), {
      ca,
    })
    assert.equal(anonymous.status, 401)
    const parts = token.split('.')
    const forged = `${parts[0]}.${parts[1]}.${Buffer.from('forged').toString('base64url')}`
    const f = await httpsRequest(new URL('/api/v1/tenants/platform/clusters', c.url), {
      ca,
      headers: { authorization: `Bearer ${forged}` },
    })
    assert.equal(f.status, 401)

    // B decided: its PDP counted the decisions; C has no PDP of its own.
    const bMetrics = await httpsRequest(new URL('/metrics', b.url), { ca })
    const allowed = /dflare_authz_decisions_total\{decision="allow"\} (\d+)/.exec(bMetrics.body)
    assert.ok(allowed && Number(allowed[1]) >= 2, 'authz on B made the decisions')
    const cMetrics = await httpsRequest(new URL('/metrics', c.url), { ca })
    assert.ok(!cMetrics.body.includes('dflare_authz_decisions_total'))

    // The event C wrote (in its own transaction, prepared by audit on A) is in A's log…
    const q = await cli(['audit', 'query', '--correlation-id', 'serve-e2e-create-1', '--json'])
    assert.equal(q.code, 0, q.stderr)
    const events = JSON.parse(q.stdout).events as { event: AuditedEvent }[]
    assert.equal(events.length, 1)
    const e = events[0]!.event
    assert.equal(e.type, 'api.request')
    assert.equal(e.action, 'cluster.create')
    assert.equal(e.outcome, 'success')
    assert.equal(e.details.status, 201)
    assert.ok(e.details.policies.length > 0, 'the determining policies came back from B')
    // …and the log still verifies end to end.
    const v = await cli(['audit', 'verify', '--json'])
    assert.equal(v.code, 0, v.stdout + v.stderr)
  })

  it('the internal listeners refuse no certificate, another CA, expired, disallowed identities and TLS 1.1', async () => {
    const gw = join(clients, 'gateway-ok')
    await issue('gateway', gw)
    const gateway = await readIdentity(gw)
    const url = b.internalUrl!

    // Control: the allow-listed identity gets a decision, from a server that proves it is authz.
    const ok = await internalCall(url, { identity: gateway, ca, servername: AUTHZ_SNI })
    assert.equal(ok.status, 200, ok.body)
    assert.ok(['allow', 'deny'].includes(JSON.parse(ok.body).decision))
    assert.equal(spiffeIdOfAltNames(ok.serverSan)?.uri, `${TD}/authz`)

    await assert.rejects(internalCall(url, { ca, servername: AUTHZ_SNI }), 'no certificate')
    await assert.rejects(
      internalCall(url, { identity: gateway, ca }),
      'no server name: no component chosen',
    )
    await assert.rejects(
      internalCall(url, { identity: gateway, ca, servername: 'iam.dflare.local' }),
      'a component that does not run there',
    )

    // Same identity from another CA; an expired certificate of this CA.
    const keys = await generateEcKeyPair()
    const key = await privateKeyToPem(keys.privateKey)
    const foreignHome = await home()
    const foreign = await openCa({
      dir: join(foreignHome, 'pki'),
      kek: new Kek(Buffer.alloc(32, 9), 'env'),
    })
    const now = Date.now()
    const forged = await foreign.ca.issue(
      { kind: 'service', spiffeId: `${TD}/gateway` },
      keys.publicKey,
      { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) },
    )
    await assert.rejects(
      internalCall(url, { identity: { cert: forged.chainPem, key }, ca, servername: AUTHZ_SNI }),
      'another CA',
    )
    const ours = await openCa({ dir: join(homeA, 'pki'), kek: await loadKek({}, homeA) })
    const expired = await ours.ca.issue(
      { kind: 'service', spiffeId: `${TD}/gateway` },
      keys.publicKey,
      { notBefore: new Date(now - 7_200_000), notAfter: new Date(now - 3_600_000) },
    )
    await assert.rejects(
      internalCall(url, { identity: { cert: expired.chainPem, key }, ca, servername: AUTHZ_SNI }),
      'expired',
    )

    // A valid certificate of this CA whose identity authz does not admit.
    await issue('iam', join(clients, 'iam'))
    const iamId = await readIdentity(join(clients, 'iam'))
    await assert.rejects(
      internalCall(url, { identity: iamId, ca, servername: AUTHZ_SNI }),
      'iam may not call authz',
    )

    // On A's shared listener: pki may call audit, but not iam, and an audit connection cannot
    // reach iam's endpoints.
    await issue('pki', join(clients, 'pki'))
    const pkiId = await readIdentity(join(clients, 'pki'))
    await assert.rejects(
      internalCall(a.internalUrl!, {
        identity: pkiId,
        ca,
        servername: 'iam.dflare.local',
        path: '/internal/v1/iam/issuer',
      }),
      'pki may not call iam',
    )
    const crossed = await internalCall(a.internalUrl!, {
      identity: pkiId,
      ca,
      servername: 'audit.dflare.local',
      path: '/internal/v1/iam/tokens/verify',
      body: { token: 'x', realm: 'platform' },
    })
    assert.equal(crossed.status, 403, 'a connection opened for audit cannot call iam')
    assert.equal(spiffeIdOfAltNames(crossed.serverSan)?.uri, `${TD}/audit`)

    // TLS 1.1 is refused everywhere: internal listeners of A and B, public listeners of A, B, C.
    for (const target of [
      { url: b.internalUrl!, servername: AUTHZ_SNI },
      { url: a.internalUrl!, servername: 'audit.dflare.local' },
      { url: a.url },
      { url: b.url },
      { url: c.url },
    ])
      await assert.rejects(
        internalCall(target.url, {
          identity: gateway,
          ca,
          servername: target.servername,
          minVersion: 'TLSv1',
          maxVersion: 'TLSv1.1',
        }),
        /version|protocol|handshake|alert/i,
        `${target.url}: TLS 1.1`,
      )
  })

  it('a revoked certificate is refused once the CRL refresh picks it up, kept-alive connections included', async () => {
    const dir = join(clients, 'gateway-revoked')
    const serial = await issue('gateway', dir)
    const id = await readIdentity(dir)
    const url = b.internalUrl!
    assert.equal((await internalCall(url, { identity: id, ca, servername: AUTHZ_SNI })).status, 200)
    const agent = new MtlsAgent(staticSource(id), { expectedServer: [`${TD}/authz`] })
    const kept = await new Promise<import('node:net').Socket>((resolve, reject) => {
      const req = https.request(
        new URL('/internal/v1/authz/decide', url),
        {
          method: 'POST',
          agent,
          servername: AUTHZ_SNI,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          const socket = res.socket
          res.resume()
          res.on('end', () => resolve(socket))
        },
      )
      req.on('error', reject)
      req.end(JSON.stringify(DECIDE))
    })
    let keptClosed = false
    kept.once('close', () => {
      keptClosed = true
    })

    const r = await cli(['pki', 'revoke', serial, '--reason', 'keyCompromise'])
    assert.equal(r.code, 0, r.stderr)
    // B refreshes its CRL from A every second (DFLARE_PKI_CRL_REFRESH=1s); bounded poll.
    let refused = false
    for (let i = 0; i < 60 && !refused; i++) {
      await sleep(500)
      refused = await internalCall(url, { identity: id, ca, servername: AUTHZ_SNI }).then(
        (x) => x.status !== 200,
        () => true,
      )
    }
    assert.ok(refused, 'the revoked certificate is refused')
    for (let i = 0; i < 20 && !keptClosed; i++) await sleep(250)
    assert.ok(keptClosed, 'the connection opened before the revocation was closed')
    agent.destroy()
    // The revocation is CRL-driven, not identity-wide: another gateway certificate still works.
    const other = join(clients, 'gateway-after')
    await issue('gateway', other)
    const fresh = await internalCall(url, {
      identity: await readIdentity(other),
      ca,
      servername: AUTHZ_SNI,
    })
    assert.equal(fresh.status, 200)
  })

  it('rotation under load: A, B and C renew their certificates and no request is lost', async () => {
    const dir = join(clients, 'gateway-load')
    await issue('gateway', dir)
    const id = await readIdentity(dir)
    const url = b.internalUrl!
    const agent = new MtlsAgent(staticSource(id), { expectedServer: [`${TD}/authz`] })
    const stats = { ok: 0, failed: [] as string[], serials: new Set<string>(), api: 0 }
    let stop = false
    const keptAlive = async () => {
      while (!stop) {
        const r = await new Promise<number>((resolve, reject) => {
          const req = https.request(
            new URL('/internal/v1/authz/decide', url),
            {
              method: 'POST',
              agent,
              servername: AUTHZ_SNI,
              headers: { 'content-type': 'application/json' },
            },
            (res) => {
              res.resume()
              res.on('end', () => resolve(res.statusCode ?? 0))
            },
          )
          req.on('error', reject)
          req.end(JSON.stringify(DECIDE))
        }).catch((err: Error) => err.message)
        if (r === 200) stats.ok++
        else stats.failed.push(`kept-alive: ${r}`)
      }
    }
    const fresh = async () => {
      while (!stop) {
        try {
          const r = await internalCall(url, { identity: id, ca, servername: AUTHZ_SNI })
          if (r.status !== 200) stats.failed.push(`fresh: HTTP ${r.status}`)
          else {
            stats.ok++
            stats.serials.add(r.serverSerial)
          }
          // The server presented authz's identity, whichever certificate it was on.
          assert.equal(
            serverIdentityCheck([`${TD}/authz`])('', {
              subjectaltname: r.serverSan,
            } as tls.PeerCertificate),
            undefined,
          )
        } catch (err) {
          stats.failed.push(`fresh: ${(err as Error).message}`)
        }
      }
    }
    // Through the whole chain: client → C (gateway) → B (authz), A (iam, audit).
    const throughGateway = async () => {
      while (!stop) {
        const r = await api('/api/v1/tenants/platform/clusters').catch(
          (err: Error) => ({ status: err.message }) as unknown as { status: number },
        )
        if (r.status === 200) stats.api++
        else stats.failed.push(`api: ${r.status}`)
      }
    }
    const renewals = (p: ServeProcess) =>
      p.logs.filter((l) => l.msg === 'service certificates renewed (SIGHUP)').length
    const rotate = async (p: ServeProcess) => {
      const before = renewals(p)
      p.hup()
      for (let i = 0; i < 200 && renewals(p) === before; i++) await sleep(50)
      assert.equal(renewals(p), before + 1, `pid ${p.pid} renewed its certificates`)
      await sleep(200)
    }
    const workers = Promise.all([keptAlive(), fresh(), throughGateway()])
    try {
      await sleep(300)
      for (let i = 0; i < 3; i++) {
        await rotate(b)
        await rotate(c)
        await rotate(a)
      }
      await sleep(300)
    } finally {
      stop = true
      await workers
      agent.destroy()
    }
    assert.deepEqual(stats.failed, [])
    assert.ok(stats.ok > 0 && stats.api > 0)
    assert.ok(stats.serials.size >= 2, 'B answered under more than one certificate')
    // The renewals went through proof of possession at A and are linked in the inventory.
    const list = await cli(['pki', 'list', '--json'])
    const items = JSON.parse(list.stdout).items as { spiffeId: string | null; serial: string }[]
    for (const name of ['authz', 'gateway', 'iam', 'audit'])
      assert.ok(
        items.filter((x) => x.spiffeId === `${TD}/${name}`).length >= 4,
        `${name} was renewed`,
      )
  })

  it('fails closed when a peer is gone: no PDP denies, no audit log is a 503', async () => {
    assert.equal(await b.stop(), 0)
    const denied = await api('/api/v1/tenants/platform/clusters', { cid: 'serve-e2e-no-pdp' })
    assert.equal(denied.status, 403, denied.body)
    assert.match(denied.json().detail, /policy decision point is unavailable/)
    const q = await cli(['audit', 'query', '--correlation-id', 'serve-e2e-no-pdp', '--json'])
    const [event] = JSON.parse(q.stdout).events as { event: AuditedEvent }[]
    assert.equal(event?.event.outcome, 'denied')

    assert.equal(await a.stop(), 0)
    const r = await api('/api/v1/tenants/platform/clusters')
    assert.equal(r.status, 503, r.body)
  })
})
