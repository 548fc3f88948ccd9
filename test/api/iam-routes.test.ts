import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { identityRoutes } from '../../src/api/iam-routes.ts'
import type { SecurityEvent } from '../../src/core/events.ts'
import type { AdminActor, AdminDeps } from '../../src/iam/admin/context.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { createSealer } from '../../src/iam/kek.ts'
import { type GatewayWorld, gatewayWorld, TableEventSink } from '../gateway/world.ts'

const SYSTEM: AdminActor = { actor: { kind: 'system', id: 'test' } }

describe('identity API: tenants, directory, service accounts, sessions, role bindings', () => {
  let w: GatewayWorld
  let admin: AdminDeps
  let alice: string
  let vic: string
  let bob: string
  let root: string
  let n = 0

  before(async () => {
    w = await gatewayWorld({
      extend: async ({ db, authz }) => {
        admin = {
          db,
          entities: authz.writer,
          sealer: createSealer(randomBytes(32)),
          events: new TableEventSink(db),
        }
        return { routes: identityRoutes({ admin, pdp: authz.pdp }) }
      },
    })
    // The world's tenants exist in the authz store only; give them their realms.
    for (const id of ['platform', 'acme', 'globex']) await createRealm(admin, SYSTEM, { id })
    alice = await w.as('acme', 'alice')
    vic = await w.as('acme', 'vic')
    bob = await w.as('globex', 'bob')
    root = await w.as('platform', 'root')
  })
  after(() => w.close())

  /** One call with its own correlation id; returns the response and that id's audit events. */
  async function call(method: string, path: string, token: string, body?: unknown) {
    const cid = `corr-iam-${++n}-${randomBytes(4).toString('hex')}`
    const r = await w.call(method, `/api/v1${path}`, {
      token,
      body,
      headers: { 'x-correlation-id': cid },
    })
    assert.equal(r.headers['x-correlation-id'], cid)
    const events = async () => (await w.events.all()).filter((e) => e.correlationId === cid)
    return Object.assign(r, { cid, events })
  }

  /** Exactly one audit event, the gateway's, committed with the change and naming it. */
  async function assertOneAudit(
    r: { events(): Promise<SecurityEvent[]> },
    domainType: string | undefined,
    outcome = 'success',
  ) {
    const events = await r.events()
    assert.equal(events.length, 1, JSON.stringify(events))
    const [e] = events as [SecurityEvent]
    assert.equal(e.type, 'api.request')
    assert.equal(e.outcome, outcome)
    if (domainType) {
      const inner = (e.details?.events ?? []) as { type: string }[]
      assert.deepEqual(
        inner.map((i) => i.type),
        [domainType],
      )
    }
    return e
  }

  let carol: string
  let dave: string
  let saId: string
  let saSecret: string

  it('a tenant admin creates a domain, a project, users and a group, each with one audit event', async () => {
    const d = await call('POST', '/tenants/acme/domains', alice, { id: 'eng', name: 'Engineering' })
    assert.equal(d.status, 201, d.body)
    assert.deepEqual(d.json(), { id: 'eng', name: 'Engineering', description: '' })
    const de = await assertOneAudit(d, 'iam.domain.created')
    assert.deepEqual(de.resource, { type: 'Dflare::Domain', id: 'acme/eng' })
    assert.equal(de.action, 'domain.create')

    const p = await call('POST', '/tenants/acme/projects', alice, {
      id: 'ml',
      name: 'ML',
      domainId: 'eng',
    })
    assert.equal(p.status, 201, p.body)
    await assertOneAudit(p, 'iam.project.created')

    const u = await call('POST', '/tenants/acme/users', alice, {
      username: 'carol',
      domainId: 'eng',
      email: 'carol@acme.example',
    })
    assert.equal(u.status, 201, u.body)
    carol = u.json().id
    assert.equal(u.json().domainId, 'eng')
    const ue = await assertOneAudit(u, 'iam.user.created')
    assert.deepEqual(ue.resource, { type: 'Dflare::User', id: `acme/${carol}` })
    const u2 = await call('POST', '/tenants/acme/users', alice, { username: 'dave' })
    assert.equal(u2.status, 201, u2.body)
    dave = u2.json().id

    const g = await call('POST', '/tenants/acme/groups', alice, { id: 'gpu-users', name: 'GPU' })
    assert.equal(g.status, 201, g.body)
    await assertOneAudit(g, 'iam.group.created')
    const m = await call('PUT', `/tenants/acme/groups/gpu-users/members/${carol}`, alice)
    assert.equal(m.status, 204, m.body)
    const me = await assertOneAudit(m, 'iam.membership.added')
    assert.deepEqual((me.details?.events as { details: unknown }[] | undefined)?.[0]?.details, {
      user: carol,
    })
    // The membership reached the authz mirror in the same transaction.
    const { rows } = await w.db.query<{ parents: { id: string }[] }>(
      `SELECT parents FROM authz.entities WHERE type = 'Dflare::User' AND id = $1`,
      [`acme/${carol}`],
    )
    assert.ok(rows[0]?.parents.some((x) => x.id === 'acme/gpu-users'))
  })

  let passkeyId: string
  let passkey2: string

  it("a tenant admin lists and removes a user's passkeys; no key material; viewers and password-only sessions cannot remove; users manage their own", async () => {
    // Two credentials of carol's, as the login ceremonies store them.
    const insert = async (name: string) => {
      const id = randomUUID()
      await w.db.query(
        `INSERT INTO iam.webauthn_credentials (realm, id, user_id, credential_id, public_key,
           counter, transports, device_type, backed_up, aaguid, name)
         VALUES ('acme', $1, $2, $3, $4, 7, '{usb}', 'singleDevice', false,
           '00000000-0000-0000-0000-000000000000', $5)`,
        [id, carol, randomBytes(32).toString('base64url'), randomBytes(77), name],
      )
      return id
    }
    passkeyId = await insert('yubikey')
    passkey2 = await insert('phone')
    const keys = await w.db.query<{ credential_id: string; public_key: Buffer }>(
      'SELECT credential_id, public_key FROM iam.webauthn_credentials',
    )
    const base = `/tenants/acme/users/${carol}/webauthn-credentials`
    const list = await call('GET', base, alice)
    assert.equal(list.status, 200, list.body)
    assert.deepEqual(
      list.json().items.map((c: { name: string }) => c.name),
      ['yubikey', 'phone'],
    )
    const one = await call('GET', `${base}/${passkeyId}`, alice)
    assert.equal(one.status, 200, one.body)
    assert.equal(one.json().deviceType, 'singleDevice')
    assert.deepEqual(one.json().transports, ['usb'])
    for (const k of keys.rows)
      for (const r of [list, one]) {
        assert.ok(!r.body.includes(k.credential_id), 'no credential id')
        assert.ok(!r.body.includes(k.public_key.toString('base64')), 'no public key')
        assert.ok(!r.body.includes(k.public_key.toString('base64url')), 'no public key')
      }
    // A viewer may not even list them (second factors are for the tenant's admins).
    assert.equal((await call('GET', base, vic)).status, 403)
    assert.equal((await call('DELETE', `${base}/${passkeyId}`, vic)).status, 403)
    // Removing a second factor is sensitive: a password-only session is refused.
    const pwdOnly = await w.as('acme', 'alice', { amr: ['pwd'] })
    const weak = await call('DELETE', `${base}/${passkeyId}`, pwdOnly)
    assert.equal(weak.status, 403, weak.body)
    assert.match(weak.body, /platform\.mfa-for-sensitive-actions/)
    // Under another user, or unknown: 404.
    assert.equal(
      (await call('GET', `/tenants/acme/users/${dave}/webauthn-credentials/${passkeyId}`, alice))
        .status,
      404,
    )
    assert.equal((await call('DELETE', `${base}/${randomUUID()}`, alice)).status, 404)
    const del = await call('DELETE', `${base}/${passkey2}`, alice)
    assert.equal(del.status, 204, del.body)
    const e = await assertOneAudit(del, 'iam.webauthn.deleted')
    assert.equal(e.action, 'webauthncredential.delete')
    assert.deepEqual(e.resource, { type: 'Dflare::WebAuthnCredential', id: `acme/${passkey2}` })
    assert.equal((await call('GET', base, alice)).json().items.length, 1)

    // Self-service: carol (no role at all) manages her own passkeys, nobody else's.
    const own = await insert('spare')
    const carolToken = await w.as('acme', carol)
    const mine = await call('GET', base, carolToken)
    assert.equal(mine.status, 200, mine.body)
    assert.deepEqual(
      mine.json().items.map((c: { name: string }) => c.name),
      ['yubikey', 'spare'],
    )
    assert.equal((await call('GET', `${base}/${own}`, carolToken)).status, 200)
    assert.equal(
      (await call('GET', `/tenants/acme/users/${dave}/webauthn-credentials`, carolToken)).status,
      403,
    )
    const carolPwd = await w.as('acme', carol, { amr: ['pwd'] })
    assert.equal((await call('DELETE', `${base}/${own}`, carolPwd)).status, 403)
    const selfDelete = await call('DELETE', `${base}/${own}`, carolToken)
    assert.equal(selfDelete.status, 204, selfDelete.body)
    assert.deepEqual((await assertOneAudit(selfDelete, 'iam.webauthn.deleted')).actor, {
      kind: 'user',
      id: carol,
      realm: 'acme',
    })
    // Her role-less token reaches nothing else of hers.
    assert.equal((await call('GET', `/tenants/acme/users/${carol}`, carolToken)).status, 403)
    assert.equal((await call('GET', '/tenants/acme/sessions', carolToken)).status, 403)
  })

  it('a service account gets its secret once, never in the audit event or the logs', async () => {
    const r = await call('POST', '/tenants/acme/service-accounts', alice, { name: 'ci' })
    assert.equal(r.status, 201, r.body)
    saId = r.json().clientId
    saSecret = r.json().clientSecret
    assert.match(saId, /^sa-[0-9a-f]{16}$/)
    assert.ok(saSecret.length >= 40)
    assert.equal(r.headers['cache-control'], 'no-store')
    await assertOneAudit(r, 'iam.client.created')
    const all = JSON.stringify(await w.events.all())
    assert.ok(!all.includes(saSecret), 'secret in an audit event')
    assert.ok(!JSON.stringify(w.logs).includes(saSecret), 'secret in the logs')
    const { rows } = await w.db.query<{ secret_enc: unknown }>(
      'SELECT secret_enc FROM iam.clients WHERE client_id = $1',
      [saId],
    )
    assert.ok(!JSON.stringify(rows).includes(saSecret), 'secret stored in clear')

    const list = await call('GET', '/tenants/acme/service-accounts', alice)
    assert.equal(list.status, 200)
    assert.deepEqual(
      list.json().items.map((i: { clientId: string }) => i.clientId),
      [saId],
    )
    assert.ok(!list.body.includes(saSecret) && !list.body.includes('clientSecret'))

    // Rotation returns a new secret once; the replay store never gets to keep one.
    const rot = await call('POST', `/tenants/acme/service-accounts/${saId}/secret`, alice)
    assert.equal(rot.status, 200, rot.body)
    assert.notEqual(rot.json().clientSecret, saSecret)
    await assertOneAudit(rot, 'iam.client.secret_rotated')
    assert.ok(!JSON.stringify(await w.events.all()).includes(rot.json().clientSecret))
    const idem = await w.call('POST', `/api/v1/tenants/acme/service-accounts/${saId}/secret`, {
      token: alice,
      headers: { 'idempotency-key': 'rotate-once-1' },
    })
    assert.equal(idem.status, 400)
  })

  it('role bindings are granted at a scope of the tenant, listed and removed', async () => {
    const binding = {
      principal: { type: 'User', id: carol },
      role: 'member',
      scope: { type: 'Project', id: 'ml' },
    }
    const r = await call('POST', '/tenants/acme/role-bindings', alice, binding)
    assert.equal(r.status, 201, r.body)
    assert.deepEqual(r.json(), binding)
    const e = await assertOneAudit(r, undefined)
    assert.deepEqual(e.details?.binding, binding)
    assert.deepEqual(e.resource, { type: 'Dflare::Project', id: 'acme/ml' })

    const list = await call('GET', '/tenants/acme/role-bindings?limit=500', alice)
    assert.equal(list.status, 200)
    const items = list.json().items as (typeof binding)[]
    assert.ok(items.some((b) => b.principal.id === carol && b.role === 'member'))
    assert.ok(items.some((b) => b.principal.id === 'alice' && b.role === 'tenant-admin'))
    // The PDP sees the new binding: carol, a member of project ml, may now act in it.
    const decision = await w.authz.pdp.decide({
      principal: { type: 'Dflare::User', id: `acme/${carol}` },
      action: { type: 'Dflare::Action', id: 'project.read' },
      resource: { type: 'Dflare::Project', id: 'acme/ml' },
      context: {},
    })
    assert.equal(decision.decision, 'allow', decision.reason)

    // Only principals of the tenant: a globex user id does not exist in acme.
    const foreign = await call('POST', '/tenants/acme/role-bindings', alice, {
      ...binding,
      principal: { type: 'User', id: 'bob' },
    })
    assert.equal(foreign.status, 400)
    const platformRole = await call('POST', '/tenants/acme/role-bindings', alice, {
      ...binding,
      role: 'platform-admin',
    })
    assert.equal(platformRole.status, 400)
    assert.match(platformRole.body, /body\.role/)

    const named = `principalType=User&principal=${carol}&role=member&scopeType=Project&scopeId=ml`
    const del = await call('DELETE', `/tenants/acme/role-bindings?${named}`, alice)
    assert.equal(del.status, 204, del.body)
    assert.deepEqual((await assertOneAudit(del, undefined)).details?.binding, binding)
    const again = await call('DELETE', `/tenants/acme/role-bindings?${named}`, alice)
    assert.equal(again.status, 404)
    // bob (globex) cannot remove acme's bindings, even naming them under his own tenant.
    const alices = 'principalType=User&principal=alice&role=tenant-admin&scopeType=Tenant'
    assert.equal((await call('DELETE', `/tenants/acme/role-bindings?${alices}`, bob)).status, 401)
    assert.equal((await call('DELETE', `/tenants/globex/role-bindings?${alices}`, bob)).status, 404)
  })

  it('a project admin cannot grant more than it holds (no privilege escalation)', async () => {
    await w.bind('acme', 'pam', 'project-admin', ['Project', 'acme/ml'])
    const pam = await w.as('acme', 'pam')
    const grant = (role: string, principal = carol) =>
      call('POST', '/tenants/acme/role-bindings', pam, {
        principal: { type: 'User', id: principal },
        role,
        scope: { type: 'Project', id: 'ml' },
      })
    for (const role of ['tenant-admin', 'domain-admin']) {
      const r = await grant(role)
      assert.equal(r.status, 403, `${role}: ${r.body}`)
      assert.match(r.json().detail, /project\.delete|project\.create|domain/)
      const [e] = (await r.events()) as [SecurityEvent]
      assert.equal(e.outcome, 'denied')
    }
    const self = await grant('tenant-admin', 'pam')
    assert.equal(self.status, 403)
    // Outside its project it grants nothing at all.
    const tenantWide = await call('POST', '/tenants/acme/role-bindings', pam, {
      principal: { type: 'User', id: carol },
      role: 'viewer',
      scope: { type: 'Tenant' },
    })
    assert.equal(tenantWide.status, 403)
    const ok = await grant('member')
    assert.equal(ok.status, 201, ok.body)
    const named = `principalType=User&principal=${carol}&role=member&scopeType=Project&scopeId=ml`
    assert.equal((await call('DELETE', `/tenants/acme/role-bindings?${named}`, pam)).status, 204)
  })

  it('lists paginate with cursors', async () => {
    const users = await call('GET', '/tenants/acme/users', alice)
    assert.equal(users.status, 200)
    assert.deepEqual(
      users.json().items.map((u: { username: string }) => u.username),
      ['carol', 'dave'],
    )
    const first = await call('GET', '/tenants/acme/users?limit=1', alice)
    assert.equal(first.json().items[0].username, 'carol')
    const cursor = first.json().next_cursor
    assert.ok(cursor)
    const second = await call('GET', `/tenants/acme/users?limit=1&cursor=${cursor}`, alice)
    assert.equal(second.json().items[0].username, 'dave')
    assert.equal(second.json().next_cursor, undefined)
    const filtered = await call('GET', '/tenants/acme/users?username_prefix=da', alice)
    assert.deepEqual(
      filtered.json().items.map((u: { username: string }) => u.username),
      ['dave'],
    )
    const bad = await call('GET', '/tenants/acme/users?username_prefix=%25%27', alice)
    assert.equal(bad.status, 400)
    assert.match(bad.body, /username_prefix/)
    for (const [path, ids] of [
      ['/tenants/acme/domains', ['eng']],
      ['/tenants/acme/projects?domainId=eng', ['ml']],
      ['/tenants/acme/groups', ['gpu-users']],
    ] as const) {
      const r = await call('GET', path, alice)
      assert.equal(r.status, 200, r.body)
      assert.deepEqual(
        r.json().items.map((i: { id: string }) => i.id),
        ids,
      )
    }
    // Service accounts page in SQL, by client id, without the tenant's other clients (a web
    // client sorting between the two must not take a place on a page).
    await w.db.query(
      "INSERT INTO iam.clients (realm, client_id, name, metadata) VALUES ('acme', 'sb-web', 'web', '{}')",
    )
    const robot = await call('POST', '/tenants/acme/service-accounts', alice, {
      name: 'robot',
      clientId: 'zz-robot-1',
    })
    assert.equal(robot.status, 201, robot.body)
    const sa1 = await call('GET', '/tenants/acme/service-accounts?limit=1', alice)
    assert.deepEqual(
      sa1.json().items.map((i: { clientId: string }) => i.clientId),
      [saId],
    )
    const sa2 = await call(
      'GET',
      `/tenants/acme/service-accounts?limit=1&cursor=${sa1.json().next_cursor}`,
      alice,
    )
    assert.deepEqual(
      sa2.json().items.map((i: { clientId: string }) => i.clientId),
      ['zz-robot-1'],
    )
    assert.equal(sa2.json().next_cursor, undefined)
    assert.equal(
      (await call('DELETE', '/tenants/acme/service-accounts/zz-robot-1', alice)).status,
      204,
    )
    await w.db.query("DELETE FROM iam.clients WHERE realm = 'acme' AND client_id = 'sb-web'")
    const one = await call('GET', `/tenants/acme/users/${carol}`, alice)
    assert.equal(one.json().username, 'carol')
    // Reads are audited too, one event each.
    assert.equal((await one.events()).length, 1)
  })

  it('a viewer reads but every write is 403, audited as denied, and changes nothing', async () => {
    assert.equal((await call('GET', '/tenants/acme/users', vic)).status, 200)
    const writes: [string, string, unknown?][] = [
      ['POST', '/tenants/acme/domains', { id: 'ops', name: 'Ops' }],
      ['POST', '/tenants/acme/projects', { id: 'p9', name: 'P9', domainId: 'eng' }],
      ['POST', '/tenants/acme/users', { username: 'mallory' }],
      ['PATCH', `/tenants/acme/users/${carol}`, { isAdmin: true }],
      ['DELETE', `/tenants/acme/users/${carol}`],
      ['POST', '/tenants/acme/groups', { id: 'admins', name: 'Admins' }],
      ['PUT', `/tenants/acme/groups/gpu-users/members/${dave}`],
      ['POST', '/tenants/acme/service-accounts', { name: 'evil' }],
      ['POST', `/tenants/acme/service-accounts/${saId}/secret`],
      [
        'POST',
        '/tenants/acme/role-bindings',
        { principal: { type: 'User', id: 'vic' }, role: 'tenant-admin', scope: { type: 'Tenant' } },
      ],
      ['PATCH', '/tenants/acme', { mfaPolicy: 'none' }],
      ['POST', '/tenants', { id: 'vic-corp' }],
    ]
    for (const [method, path, body] of writes) {
      const r = await call(method, path, vic, body)
      // Platform routes do not accept a tenant's token at all.
      assert.equal(r.status, path === '/tenants' ? 401 : 403, `${method} ${path}: ${r.body}`)
      assert.ok(!r.body.includes('clientSecret'))
      const [e] = (await r.events()) as [SecurityEvent]
      assert.equal(e.outcome, path === '/tenants' ? 'failure' : 'denied')
    }
    const users = await call('GET', '/tenants/acme/users', alice)
    assert.equal(users.json().items.length, 2)
    assert.equal(users.json().items[0].isAdmin, false)
  })

  it("another tenant's admin gets 401/404 and never sees the data", async () => {
    const acmePaths = [
      ['GET', '/tenants/acme/users'],
      ['GET', `/tenants/acme/users/${carol}`],
      ['DELETE', `/tenants/acme/users/${carol}`],
      ['GET', '/tenants/acme/service-accounts'],
      ['POST', `/tenants/acme/service-accounts/${saId}/secret`],
      ['GET', '/tenants/acme/role-bindings'],
      ['GET', '/tenants/acme'],
    ]
    for (const [method, path] of acmePaths) {
      const r = await call(method!, path!, bob)
      assert.ok([401, 404].includes(r.status), `${method} ${path}: ${r.status}`)
      for (const secret of [carol, 'carol', saId, 'Engineering'])
        assert.ok(!r.body.includes(secret), `${path} leaked ${secret}`)
    }
    // Naming acme's objects under bob's own tenant finds nothing.
    for (const [method, path] of [
      ['GET', `/tenants/globex/users/${carol}`],
      ['DELETE', `/tenants/globex/users/${carol}`],
      ['PATCH', `/tenants/globex/users/${carol}`],
      ['DELETE', `/tenants/globex/service-accounts/${saId}`],
      ['POST', `/tenants/globex/service-accounts/${saId}/secret`],
      ['DELETE', '/tenants/globex/domains/eng'],
      ['DELETE', '/tenants/globex/projects/ml'],
      ['PUT', `/tenants/globex/groups/gpu-users/members/${carol}`],
    ] as const) {
      const r = await call(method, path, bob, method === 'PATCH' ? { disabled: true } : undefined)
      assert.equal(r.status, 404, `${method} ${path}: ${r.body}`)
    }
    for (const path of ['users', 'domains', 'projects', 'groups', 'service-accounts']) {
      const r = await call('GET', `/tenants/globex/${path}`, bob)
      assert.equal(r.status, 200, r.body)
      assert.deepEqual(r.json().items, [], path)
    }
    // bob cannot bind acme's user in globex either.
    const b = await call('POST', '/tenants/globex/role-bindings', bob, {
      principal: { type: 'User', id: carol },
      role: 'tenant-admin',
      scope: { type: 'Tenant' },
    })
    assert.equal(b.status, 400)
  })

  it("every identity item route, generated from OpenAPI, finds nothing of acme's under globex", async () => {
    const doc = (await w.call('GET', '/api/openapi.json')).json()
    const values: Record<string, string> = {
      domain: 'eng',
      project: 'ml',
      user: carol,
      group: 'gpu-users',
      client: saId,
      sid: 'sid-acme-1',
      credential: passkeyId,
    }
    let checked = 0
    const before = JSON.stringify(
      (await w.db.query('SELECT * FROM iam.users ORDER BY id')).rows.map((r) => ({ ...r })),
    )
    for (const [path, ops] of Object.entries(doc.paths as Record<string, object>)) {
      const names = [...path.matchAll(/\{([a-z]+)\}/g)].map((m) => m[1]!)
      const collection = path.split('/')[5]!
      const identity = ['domains', 'projects', 'users', 'groups', 'service-accounts', 'sessions']
      if (!identity.includes(collection) || names.length < 2) continue
      for (const method of Object.keys(ops).map((m) => m.toUpperCase())) {
        const concrete = path.replace(/\{([a-z]+)\}/g, (_, n: string) =>
          n === 'tenant' ? 'globex' : values[n]!,
        )
        const body = method === 'PATCH' ? { displayName: 'pwn' } : undefined
        const r = await w.call(method, concrete, { token: bob, body })
        assert.equal(r.status, 404, `${method} ${concrete}: ${r.body}`)
        for (const secret of Object.values(values))
          assert.ok(!r.body.includes(secret), `${method} ${concrete} leaked ${secret}`)
        checked++
      }
    }
    assert.equal(checked, 14, `${checked} item operations`)
    const after = JSON.stringify(
      (await w.db.query('SELECT * FROM iam.users ORDER BY id')).rows.map((r) => ({ ...r })),
    )
    assert.equal(after, before)
  })

  it('invalid input is a 400 naming the field, before anything changes', async () => {
    const bad = await call('POST', '/tenants/acme/domains', alice, { id: 'Bad Id!', name: 'x' })
    assert.equal(bad.status, 400)
    assert.equal(bad.headers['content-type'], 'application/problem+json; charset=utf-8')
    assert.ok(
      bad.json().errors.some((e: { field: string }) => e.field === 'body.id'),
      bad.body,
    )
    const extra = await call('POST', '/tenants/acme/groups', alice, {
      id: 'x1',
      name: 'x',
      isAdmin: true,
    })
    assert.equal(extra.status, 400)
    assert.match(extra.body, /isAdmin/)
    const noDomain = await call('POST', '/tenants/acme/projects', alice, {
      id: 'p5',
      name: 'P5',
      domainId: 'nope',
    })
    assert.equal(noDomain.status, 400)
    assert.ok(noDomain.json().errors.some((e: { field: string }) => e.field === 'body.domainId'))
    const badUser = await call('GET', '/tenants/acme/users/not-a-uuid', alice)
    assert.equal(badUser.status, 400)
    assert.match(badUser.body, /params\.user/)
    const email = await call('POST', '/tenants/acme/users', alice, {
      username: 'erin',
      email: 'not-an-email',
    })
    assert.equal(email.status, 400)
    assert.deepEqual(email.json().errors, [{ field: 'body.email', message: 'has the wrong form' }])
    const emptyPatch = await call('PATCH', `/tenants/acme/users/${carol}`, alice, {})
    assert.equal(emptyPatch.status, 400)
    const dup = await call('POST', '/tenants/acme/domains', alice, { id: 'eng', name: 'Again' })
    assert.equal(dup.status, 409)
    const [e] = (await dup.events()) as [SecurityEvent]
    assert.equal(e.outcome, 'failure')
    assert.equal(
      (await w.events.all()).filter((x) => x.type === 'iam.domain.created').length,
      0,
      'domain events travel inside api.request only',
    )
  })

  it('when the audit log cannot record, the write is a 503 and nothing changes', async () => {
    w.events.failing = true
    try {
      const r = await w.call('POST', '/api/v1/tenants/acme/domains', {
        token: alice,
        body: { id: 'unaudited', name: 'Unaudited' },
      })
      assert.equal(r.status, 503, r.body)
    } finally {
      w.events.failing = false
    }
    const { rows } = await w.db.query(
      `SELECT 1 FROM iam.domains WHERE id = 'unaudited'
       UNION ALL SELECT 1 FROM authz.entities WHERE id = 'acme/unaudited'`,
    )
    assert.equal(rows.length, 0)
  })

  it('a failing management call rolls back with its audit event outcome failure', async () => {
    const r = await call('DELETE', '/tenants/acme/domains/eng', alice)
    assert.equal(r.status, 409, r.body)
    await assertOneAudit(r, undefined, 'failure')
    const still = await call('GET', '/tenants/acme/domains', alice)
    assert.deepEqual(
      still.json().items.map((d: { id: string }) => d.id),
      ['eng'],
    )
  })

  it('updates, unlock, membership removal, sessions and deletes', async () => {
    const upd = await call('PATCH', `/tenants/acme/users/${dave}`, alice, { displayName: 'Dave D' })
    assert.equal(upd.status, 200, upd.body)
    assert.equal(upd.json().displayName, 'Dave D')
    await assertOneAudit(upd, 'iam.user.updated')
    const unl = await call('POST', `/tenants/acme/users/${dave}/unlock`, alice)
    assert.equal(unl.status, 204, unl.body)
    await assertOneAudit(unl, 'iam.user.unlocked')
    const rm = await call('DELETE', `/tenants/acme/groups/gpu-users/members/${carol}`, alice)
    assert.equal(rm.status, 204, rm.body)
    await assertOneAudit(rm, 'iam.membership.removed')

    // A login session of carol's, as the OIDC provider stores it.
    await w.db.query(
      `INSERT INTO iam.oidc_payloads (realm, model, id, uid, account_id, payload, expires_at)
       VALUES ('acme', 'Session', 'sess-cookie-1', 'sid-carol-1', $1, $2, now() + interval '1 hour')`,
      [carol, JSON.stringify({ uid: 'sid-carol-1', accountId: carol, amr: ['pwd'] })],
    )
    const sessions = await call('GET', `/tenants/acme/sessions?userId=${carol}`, alice)
    assert.equal(sessions.status, 200, sessions.body)
    assert.deepEqual(
      sessions.json().items.map((s: { id: string }) => s.id),
      ['sid-carol-1'],
    )
    assert.ok(!sessions.body.includes('sess-cookie-1'), 'the cookie id stays private')
    assert.equal((await call('GET', '/tenants/globex/sessions', bob)).json().items.length, 0)
    assert.equal((await call('DELETE', '/tenants/globex/sessions/sid-carol-1', bob)).status, 404)
    const rev = await call('DELETE', '/tenants/acme/sessions/sid-carol-1', alice)
    assert.equal(rev.status, 204, rev.body)
    await assertOneAudit(rev, 'iam.session.revoked')
    assert.equal((await call('GET', '/tenants/acme/sessions', alice)).json().items.length, 0)

    const sa = await call('DELETE', `/tenants/acme/service-accounts/${saId}`, alice)
    assert.equal(sa.status, 204, sa.body)
    await assertOneAudit(sa, 'iam.client.deleted')
    const u = await call('DELETE', `/tenants/acme/users/${dave}`, alice)
    assert.equal(u.status, 204, u.body)
    await assertOneAudit(u, 'iam.user.deleted')
    assert.equal((await call('GET', `/tenants/acme/users/${dave}`, alice)).status, 404)
    assert.equal((await call('DELETE', '/tenants/acme/projects/ml', alice)).status, 204)
    const d = await call('DELETE', '/tenants/acme/domains/eng', alice)
    assert.equal(d.status, 204, d.body)
    await assertOneAudit(d, 'iam.domain.deleted')
  })

  it('platform operators create and list tenants; tenant admins update their own', async () => {
    const r = await call('POST', '/tenants', root, { id: 'initech', displayName: 'Initech' })
    assert.equal(r.status, 201, r.body)
    assert.equal(r.json().id, 'initech')
    const e = await assertOneAudit(r, 'iam.realm.created')
    assert.equal(e.tenant, 'platform')
    assert.deepEqual(e.resource, { type: 'Dflare::Tenant', id: 'initech' })
    assert.equal((await call('POST', '/tenants', root, { id: 'initech' })).status, 409)
    const list = await call('GET', '/tenants', root)
    assert.deepEqual(
      list.json().items.map((t: { id: string }) => t.id),
      ['acme', 'globex', 'initech', 'platform'],
    )
    assert.equal((await call('GET', '/tenants', alice)).status, 401)
    assert.equal((await call('POST', '/tenants', alice, { id: 'alice-corp' })).status, 401)

    const own = await call('PATCH', '/tenants/acme', alice, { displayName: 'ACME Corp' })
    assert.equal(own.status, 200, own.body)
    assert.equal(own.json().displayName, 'ACME Corp')
    await assertOneAudit(own, 'iam.realm.updated')
    assert.equal((await call('GET', '/tenants/acme', alice)).json().displayName, 'ACME Corp')
    assert.equal((await call('PATCH', '/tenants/acme', bob, { displayName: 'pwn' })).status, 401)
    const suspend = await call('PATCH', '/tenants/acme', alice, { disabled: true })
    assert.equal(suspend.status, 403)
    assert.equal((await call('GET', '/tenants/acme', alice)).json().disabled, false)

    // Operators reach into a tenant: its first admin is created and bound by the platform.
    const first = await call('POST', '/tenants/globex/users', root, { username: 'gina' })
    assert.equal(first.status, 201, first.body)
    const bound = await call('POST', '/tenants/globex/role-bindings', root, {
      principal: { type: 'User', id: first.json().id },
      role: 'tenant-admin',
      scope: { type: 'Tenant' },
    })
    assert.equal(bound.status, 201, bound.body)
    const [e2] = (await bound.events()) as [SecurityEvent]
    assert.equal(e2.tenant, 'globex')
    assert.deepEqual(e2.actor, { kind: 'user', id: 'root', realm: 'platform' })
  })

  it('the OpenAPI document describes every identity route with its schemas', async () => {
    const doc = (await w.call('GET', '/api/openapi.json')).json()
    const post = doc.paths['/api/v1/tenants/{tenant}/service-accounts'].post
    assert.ok(post.requestBody)
    assert.ok(doc.paths['/api/v1/tenants/{tenant}/role-bindings'].delete)
    assert.ok(doc.paths['/api/v1/tenants/{tenant}/groups/{group}/members/{user}'].put)
  })
})
