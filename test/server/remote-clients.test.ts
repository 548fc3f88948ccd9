import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { Registry } from 'prom-client'
import { RemoteEventSink } from '../../src/audit/remote-sink.ts'
import { RemotePdp, UNAVAILABLE_REASON } from '../../src/authz/remote-pdp.ts'
import { enterOutboundContext } from '../../src/core/correlation.ts'
import type { Transaction } from '../../src/core/db/index.ts'
import { Problem } from '../../src/core/errors.ts'
import type { SecurityEvent } from '../../src/core/events.ts'
import { RemoteIdentity } from '../../src/iam/remote-authority.ts'
import { TokenRejected } from '../../src/iam/verify.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { Kek } from '../../src/pki/kek.ts'
import { generateEcKeyPair, privateKeyToPem } from '../../src/pki/keys.ts'
import { PeerClient } from '../../src/pki/peer-client.ts'
import type { TlsIdentity } from '../../src/pki/tls-policy.ts'
import type { InternalApi } from '../../src/server/component.ts'
import { createInternalListener, type InternalListener } from '../../src/server/internal.ts'
import { peerServerName } from '../../src/server/topology.ts'
import { tempHome } from '../support/server.ts'

/**
 * The remote clients fail closed: an unreachable peer or any answer that is not exactly what
 * the contract promises yields deny (PDP), an error (audit: the caller's action fails) or
 * 503/401 (identity) — never allow, recorded, exists or valid.
 */
const TD = 'dflare.local'
const REQUEST = {
  principal: { type: 'Dflare::User', id: 'acme/u1' },
  action: { type: 'Dflare::Action', id: 'cluster.read' },
  resource: { type: 'Dflare::Cluster', id: 'acme/c1' },
  context: {},
}
const EVENT: SecurityEvent = {
  type: 'api.request',
  tenant: 'acme',
  actor: { kind: 'user', id: 'u1' },
  action: 'cluster.read',
  outcome: 'success',
}
/** Never used: every failure here happens before the transaction is touched. */
const NO_TX = {} as Transaction

describe('remote clients fail closed', () => {
  let home: Awaited<ReturnType<typeof tempHome>>
  let listener: InternalListener
  let url: URL
  let deadUrl: URL
  let gateway: TlsIdentity
  /** What the fake peers saw of each call: the request id they logged under, the ids sent. */
  const calls: { id: string; correlation: unknown; traceparent: unknown }[] = []
  /** What the fake peers answer: a status and a body, per path. */
  const answers = new Map<string, { status: number; body: unknown }>()
  const source = (id: TlsIdentity) => ({ current: () => id, onChange: () => () => {} })
  const client = (peer: string, target = url) =>
    new PeerClient({
      peer,
      url: target,
      identity: source(gateway),
      trustDomain: TD,
      serverName: peerServerName(peer, TD),
      timeoutMs: 2_000,
    })

  before(async () => {
    home = await tempHome()
    const { ca } = await openCa({
      dir: join(home.path, 'pki'),
      kek: new Kek(Buffer.alloc(32, 5), 'env'),
    })
    const now = Date.now()
    const identity = async (name: string): Promise<TlsIdentity> => {
      const keys = await generateEcKeyPair()
      const issued = await ca.issue(
        { kind: 'service', spiffeId: `spiffe://${TD}/component/${name}` },
        keys.publicKey,
        { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) },
      )
      return { cert: issued.chainPem, key: await privateKeyToPem(keys.privateKey), ca: ca.rootPem }
    }
    gateway = await identity('gateway')
    const fake = (component: string): InternalApi => ({
      component,
      callers: ['gateway'],
      routes(app) {
        app.all('/*', async (request, reply) => {
          calls.push({
            id: request.id,
            correlation: request.headers['x-correlation-id'],
            traceparent: request.headers.traceparent,
          })
          const a = answers.get(request.url) ?? { status: 404, body: { error: 'none' } }
          return reply.code(a.status).send(a.body)
        })
      },
    })
    listener = await createInternalListener({
      apis: [fake('authz'), fake('audit'), fake('iam')],
      identities: new Map([
        ['authz', source(await identity('authz'))],
        ['audit', source(await identity('audit'))],
        ['iam', source(await identity('iam'))],
      ]),
      revocation: { status: () => 'good', onUpdate: () => () => {} },
      trustDomain: TD,
      minVersion: 'TLSv1.2',
      bodyLimit: 1_048_576,
      log: pino({ level: 'silent' }),
      metrics: new Registry(),
    })
    url = await listener.listen(new URL('https://127.0.0.1:0'))
    // A port nothing listens on.
    const probe = createServer()
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r))
    deadUrl = new URL(`https://127.0.0.1:${(probe.address() as { port: number }).port}`)
    await new Promise((r) => probe.close(r))
  })
  after(async () => {
    await listener?.close()
    await home?.remove()
  })

  it('PDP: a well-formed decision passes; unreachable or malformed answers deny', async () => {
    const path = '/internal/v1/authz/decide'
    const allow = { decision: 'allow', determining: ['p1'], errors: [], reason: 'ok' }
    answers.set(path, { status: 200, body: allow })
    const pdp = new RemotePdp(client('authz'))
    assert.deepEqual(await pdp.decide(REQUEST), allow, 'control')
    for (const body of [
      { ...allow, decision: 'ALLOW' },
      { decision: 'allow' },
      { ...allow, determining: 'p1' },
      { ...allow, errors: [{ policy: 1 }] },
      'allow',
      null,
    ]) {
      answers.set(path, { status: 200, body })
      assert.equal((await pdp.decide(REQUEST)).decision, 'deny', JSON.stringify(body))
    }
    answers.set(path, { status: 500, body: allow })
    assert.equal((await pdp.decide(REQUEST)).decision, 'deny', 'an error status')
    const dead = await new RemotePdp(client('authz', deadUrl)).decide(REQUEST)
    assert.deepEqual(dead, {
      decision: 'deny',
      determining: [],
      errors: [],
      reason: UNAVAILABLE_REASON,
    })
    // A server with another identity (iam's certificate answering for authz) is not the PDP.
    const wrong = new PeerClient({
      peer: 'authz',
      url,
      identity: source(gateway),
      trustDomain: TD,
      serverName: peerServerName('iam', TD),
    })
    answers.set(path, { status: 200, body: allow })
    assert.equal((await new RemotePdp(wrong).decide(REQUEST)).decision, 'deny')
  })

  it('audit: anything but a recorded or prepared event throws, so the action fails', async () => {
    const sink = new RemoteEventSink(client('audit'))
    answers.set('/internal/v1/audit/events', { status: 200, body: { recorded: true } })
    await sink.record(EVENT)
    for (const a of [
      { status: 200, body: { recorded: false } },
      { status: 400, body: { detail: 'invalid' } },
      { status: 503, body: {} },
    ]) {
      answers.set('/internal/v1/audit/events', a)
      await assert.rejects(sink.record(EVENT), /refused/)
    }
    for (const body of [
      { log: 'other-tenant', body: '{"v":1}' },
      { log: 'acme', body: '' },
      { log: 'acme' },
    ]) {
      answers.set('/internal/v1/audit/prepare', { status: 200, body })
      await assert.rejects(sink.record(EVENT, NO_TX), /refused/, JSON.stringify(body))
    }
    const dead = new RemoteEventSink(client('audit', deadUrl))
    await assert.rejects(dead.record(EVENT))
    await assert.rejects(dead.record(EVENT, NO_TX))
  })

  it('identity: unreachable means 503 for existence, rejection for tokens, never valid', async () => {
    const dead = new RemoteIdentity(client('iam', deadUrl))
    assert.match(dead.ready() ?? '', /not reached/)
    assert.throws(
      () => dead.issuer('platform'),
      (e: unknown) => (e as Problem).status === 503,
    )
    await assert.rejects(dead.realmExists('acme'), (e: unknown) => (e as Problem).status === 503)
    await assert.rejects(dead.projectExists('acme', 'p1'), Problem)
    await assert.rejects(dead.verifyAccessToken('a.b.c', 'acme'))

    const iam = new RemoteIdentity(client('iam'))
    answers.set('/internal/v1/iam/issuer', { status: 200, body: { origin: 'https://id.example' } })
    iam.start()
    for (let i = 0; i < 100 && iam.ready(); i++) await new Promise((r) => setTimeout(r, 20))
    assert.equal(iam.issuer('acme'), 'https://id.example/realms/acme')
    answers.set('/internal/v1/iam/tokens/verify', { status: 401, body: { error: 'invalid_token' } })
    await assert.rejects(iam.verifyAccessToken('a.b.c', 'acme'), TokenRejected)
    answers.set('/internal/v1/iam/tokens/verify', {
      status: 200,
      body: { claims: { sub: 'u1', tid: 'acme' }, maxAccessTokenTtl: 300 },
    })
    await assert.rejects(iam.verifyAccessToken('a.b.c', 'acme'), /verification failed/)
    answers.set('/internal/v1/iam/realms/acme', { status: 200, body: { exists: 'yes' } })
    await assert.rejects(iam.realmExists('acme'), Problem)
    answers.set('/internal/v1/iam/realms/acme', {
      status: 200,
      body: { exists: true, maxAccessTokenTtl: 300 },
    })
    assert.equal(await iam.realmExists('acme'), true)
    assert.equal(await iam.maxAccessTokenTtl('acme'), 300)
    iam.stop()
  })

  it("calls made while serving a request carry its correlation id and trace; others don't", async () => {
    const path = '/internal/v1/authz/decide'
    answers.set(path, {
      status: 200,
      body: { decision: 'allow', determining: ['p1'], errors: [], reason: 'ok' },
    })
    const pdp = new RemotePdp(client('authz'))
    calls.length = 0
    await pdp.decide(REQUEST)
    assert.equal(calls[0]?.correlation, undefined)
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736'
    await new Promise<void>((resolve, reject) => {
      // A new asynchronous context, as each request has.
      setImmediate(() => {
        enterOutboundContext({
          correlationId: 'req-1234-abcd',
          traceparent: () => `00-${trace}-00f067aa0ba902b7-01`,
        })
        pdp.decide(REQUEST).then(() => resolve(), reject)
      })
    })
    assert.equal(calls[1]?.correlation, 'req-1234-abcd')
    assert.equal(calls[1]?.id, 'req-1234-abcd', 'the callee logs the call under the same id')
    assert.match(String(calls[1]?.traceparent), new RegExp(`^00-${trace}-`))
    // Outside that context, nothing leaks from it.
    await pdp.decide(REQUEST)
    assert.equal(calls[2]?.correlation, undefined)
    assert.notEqual(calls[2]?.id, 'req-1234-abcd')
  })
})
