import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { MemoryEventSink } from '../../src/core/events.ts'
import { DbAdapter } from '../../src/iam/adapter.ts'
import type { AdminDeps } from '../../src/iam/admin/context.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { createUser, unlockUser } from '../../src/iam/admin/users.ts'
import { Authenticator } from '../../src/iam/authn.ts'
import { bootstrap } from '../../src/iam/bootstrap.ts'
import { passwordProblem } from '../../src/iam/credentials/passwords.ts'
import { totpCode } from '../../src/iam/credentials/totp.ts'
import { relyingPartyFor } from '../../src/iam/credentials/webauthn.ts'
import { createSealer, loadKek } from '../../src/iam/kek.ts'
import { ensureKeys, loadKeys, publishedKeys } from '../../src/iam/keys.ts'
import { iamMigrations } from '../../src/iam/migrations.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'
import { OPERATOR, RecordingEntityWriter } from './harness.ts'

describe('iam building blocks', () => {
  let t: TestDatabase
  let home: string
  let deps: AdminDeps
  const events = new MemoryEventSink()
  const sealer = createSealer(randomBytes(32))
  before(async () => {
    t = await migratedDatabase([iamMigrations])
    home = await mkdtemp(join(tmpdir(), 'dflare-iam-unit-'))
    deps = { db: t.db, events, entities: new RecordingEntityWriter(), sealer }
    await createRealm(deps, OPERATOR, { id: 'acme', mfaPolicy: 'none' })
  })
  after(async () => {
    await t.close()
    await rm(home, { recursive: true, force: true })
  })

  test('the KEK file is created 0600 and reused; sealed values are bound to their row', async () => {
    const k1 = await loadKek(home)
    const k2 = await loadKek(home)
    assert.deepEqual(k1, k2)
    assert.equal((await stat(join(home, 'iam', 'kek'))).mode & 0o777, 0o600)
    const s = createSealer(k1)
    const sealed = s.seal('secret', 'row/a')
    assert.equal(s.open(sealed, 'row/a').toString(), 'secret')
    assert.throws(() => s.open(sealed, 'row/b'))
    sealed[sealed.length - 1]! ^= 1
    assert.throws(() => s.open(sealed, 'row/a'))
  })

  test('signing keys: current + next, rotation with overlap, private keys encrypted at rest', async () => {
    const policy = { rotationInterval: 3_600_000, overlap: 900_000 }
    assert.equal(await ensureKeys(t.db, sealer, events, 'acme', policy), false)
    const before = await loadKeys(t.db, sealer, 'acme')
    assert.equal(before.signing.length, 1)
    assert.equal(before.published.length, 2)
    const { rows } = await t.db.query<{ private_jwk_enc: Buffer }>(
      'SELECT private_jwk_enc FROM iam.signing_keys WHERE realm = $1',
      ['acme'],
    )
    for (const r of rows) assert.ok(!r.private_jwk_enc.toString('latin1').includes('"d"'))
    const next = before.published.find((k) => k.kid !== before.signing[0]!.kid)!
    // Pretend the current key is old enough to rotate.
    await t.db.query(
      `UPDATE iam.signing_keys SET activated_at = now() - interval '2 hours' WHERE realm = 'acme' AND state = 'current'`,
    )
    assert.equal(await ensureKeys(t.db, sealer, events, 'acme', policy), true)
    const afterRotation = await loadKeys(t.db, sealer, 'acme')
    assert.equal(afterRotation.signing[0]!.kid, next.kid, 'next became current')
    const published = (await publishedKeys(t.db, 'acme')).map((k) => k.kid)
    assert.equal(published.length, 3, 'previous stays published during the overlap')
    assert.ok(published.includes(before.signing[0]!.kid!))
    assert.ok(events.events.some((e) => e.type === 'key.rotated'))
    await t.db.query(
      `UPDATE iam.signing_keys SET retire_at = now() - interval '1 second' WHERE state = 'previous'`,
    )
    await ensureKeys(t.db, sealer, events, 'acme', policy)
    assert.equal((await publishedKeys(t.db, 'acme')).length, 2)
  })

  test('adapter: expiry, consume, grant-wide revocation, lookups by uid and user code', async () => {
    const rt = new DbAdapter(t.db, 'acme', 'RefreshToken')
    const at = new DbAdapter(t.db, 'acme', 'AccessToken')
    const other = new DbAdapter(t.db, 'globex', 'RefreshToken')
    await rt.upsert('r1', { grantId: 'g1', accountId: 'u1' }, 60)
    await at.upsert('a1', { grantId: 'g1' }, 60)
    await rt.upsert('r2', { grantId: 'g2' }, 60)
    await other.upsert('r1', { grantId: 'g1' }, 60)
    await rt.upsert('expired', { grantId: 'g3' }, 60)
    await t.db.query(
      `UPDATE iam.oidc_payloads SET expires_at = now() - interval '1 second' WHERE id = 'expired'`,
    )
    assert.equal(await rt.find('expired'), undefined)
    await rt.consume('r1')
    assert.equal(typeof (await rt.find('r1'))?.consumed, 'number')
    await rt.revokeByGrantId('g1')
    assert.equal(await rt.find('r1'), undefined)
    assert.equal(await at.find('a1'), undefined)
    assert.ok(await rt.find('r2'))
    assert.ok(await other.find('r1'), 'another realm’s grant with the same id is untouched')
    const dc = new DbAdapter(t.db, 'acme', 'DeviceCode')
    await dc.upsert('d1', { userCode: 'ABCD-EFGH' }, 60)
    assert.ok(await dc.findByUserCode('ABCD-EFGH'))
    const s = new DbAdapter(t.db, 'acme', 'Session')
    await s.upsert('s1', { uid: 'uid-1' }, 60)
    assert.ok(await s.findByUid('uid-1'))
  })

  test('passwords: NIST length rules and blocklist', () => {
    assert.match(passwordProblem('short')!, /at least 8/)
    assert.match(passwordProblem('password123')!, /common/)
    assert.match(passwordProblem('alice-is-great', ['alice'])!, /user name/)
    assert.equal(passwordProblem('correct horse battery staple'), undefined)
    assert.equal(passwordProblem('ünïcödé pässwörd ✓'), undefined)
    assert.match(passwordProblem('x'.repeat(257))!, /at most/)
  })

  test('authenticator: TOTP replay refused, lockout, admin unlock, per-IP throttling', async () => {
    const authn = new Authenticator(
      t.db,
      events,
      sealer,
      { threshold: 3, duration: 60_000, ipLimit: 5 },
      (realm) => relyingPartyFor(new URL('https://login.example'), realm),
    )
    const user = await createUser(deps, OPERATOR, 'acme', {
      username: 'bob',
      password: 'long enough secret',
    })
    const req = { ip: '192.0.2.1' }
    const ok = await authn.password('acme', 'bob', 'long enough secret', req)
    assert.deepEqual(ok, { ok: true, userId: user.id, mfa: 'none' })
    const { factorId, secret } = await authn.beginTotp('acme', user.id)
    assert.equal(
      await authn.confirmTotp('acme', user.id, factorId, totpCode(secret), req, [
        'aaaa-bbbb-cccc-dddd',
      ]),
      true,
    )
    // The enrolment code's time step is used: the same code (or any older) is refused.
    const replay = await authn.secondFactor('acme', user.id, totpCode(secret), req)
    assert.deepEqual(replay, { ok: false, reason: 'replayed' })
    const next = await authn.secondFactor(
      'acme',
      user.id,
      totpCode(secret, Date.now() + 30_000),
      req,
    )
    assert.equal(next.ok, true)
    assert.equal((await authn.secondFactor('acme', user.id, 'AAAA-BBBB-CCCC-DDDD', req)).ok, true)
    assert.equal((await authn.secondFactor('acme', user.id, 'aaaa-bbbb-cccc-dddd', req)).ok, false)
    // A reused recovery code was a failure; two wrong passwords more reach the threshold of 3.
    assert.equal((await authn.password('acme', 'bob', 'wrong', { ip: '192.0.2.2' })).ok, false)
    assert.equal((await authn.password('acme', 'bob', 'wrong', { ip: '192.0.2.2' })).ok, false)
    const locked = await authn.password('acme', 'bob', 'long enough secret', { ip: '192.0.2.3' })
    assert.deepEqual(locked, { ok: false, reason: 'locked' })
    await unlockUser(deps, OPERATOR, 'acme', user.id)
    assert.equal(
      (await authn.password('acme', 'bob', 'long enough secret', { ip: '192.0.2.3' })).ok,
      true,
    )
    for (let i = 0; i < 5; i++)
      await authn.password('acme', `nobody${i}`, 'x', { ip: '198.51.100.7' })
    const throttled = await authn.password('acme', 'bob', 'long enough secret', {
      ip: '198.51.100.7',
    })
    assert.deepEqual(throttled, { ok: false, reason: 'throttled' })
    const text = JSON.stringify(events.events)
    assert.ok(!text.includes('long enough secret') && !text.includes(secret))
  })

  test('bootstrap writes bootstrap.json 0600 once, and later starts reuse it', async () => {
    const b = await migratedDatabase([iamMigrations])
    try {
      const d: AdminDeps = { ...deps, db: b.db }
      const lines: string[] = []
      const log = { info: (o: unknown, m: string) => lines.push(JSON.stringify(o) + m) } as never
      const ensure = (realm: string) =>
        ensureKeys(b.db, sealer, events, realm, { rotationInterval: 3_600_000, overlap: 900_000 })
      const first = await bootstrap({
        deps: d,
        home,
        issuer: 'https://h/realms/platform',
        ensureKeys: ensure,
        log,
      })
      assert.equal(first.created, true)
      assert.equal((await stat(first.path)).mode & 0o777, 0o600)
      const file = JSON.parse(await readFile(first.path, 'utf8'))
      assert.deepEqual(Object.keys(file).sort(), [
        'admin_password',
        'admin_username',
        'ca_cert',
        'client_id',
        'client_secret',
        'issuer',
      ])
      assert.equal(file.ca_cert, join(home, 'pki', 'ca.crt'))
      const second = await bootstrap({
        deps: d,
        home,
        issuer: 'https://h/realms/platform',
        ensureKeys: ensure,
        log,
      })
      assert.equal(second.created, false)
      assert.deepEqual(JSON.parse(await readFile(first.path, 'utf8')), file)
      const logged = lines.join('\n')
      assert.ok(!logged.includes(file.client_secret) && !logged.includes(file.admin_password))
      const admin = await b.db.query<{ must_enroll_mfa: boolean; is_admin: boolean }>(
        `SELECT must_enroll_mfa, is_admin FROM iam.users WHERE realm = 'platform' AND username = 'admin'`,
      )
      assert.deepEqual(admin.rows[0], { must_enroll_mfa: true, is_admin: true })
    } finally {
      await b.close()
    }
  })
})
