import assert from 'node:assert/strict'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { MemoryEventSink, type SecurityEvent } from '../../src/core/events.ts'
import type { AdminDeps } from '../../src/iam/admin/context.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { createUser } from '../../src/iam/admin/users.ts'
import { deleteWebAuthnCredential, listWebAuthnCredentials } from '../../src/iam/admin/webauthn.ts'
import { Authenticator } from '../../src/iam/authn.ts'
import { relyingPartyFor } from '../../src/iam/credentials/webauthn.ts'
import { createSealer } from '../../src/iam/kek.ts'
import { iamMigrations } from '../../src/iam/migrations.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'
import { SoftAuthenticator } from '../support/soft-authenticator.ts'
import { OPERATOR, RecordingEntityWriter } from './harness.ts'

const PUBLIC_URL = new URL('https://login.dflare.test:8443')
const ORIGIN = PUBLIC_URL.origin
const PASSWORD = 'long enough secret'
const THRESHOLD = 8

describe('WebAuthn ceremonies with a software authenticator', () => {
  let t: TestDatabase
  let deps: AdminDeps
  let authn: Authenticator
  const events = new MemoryEventSink()
  const req = { ip: '192.0.2.10', userAgent: 'test' }
  const users: Record<string, string> = {}
  let n = 0
  const binding = () => ({ interaction: `uid-${++n}` })

  before(async () => {
    t = await migratedDatabase([iamMigrations])
    deps = {
      db: t.db,
      events,
      entities: new RecordingEntityWriter(),
      sealer: createSealer(randomBytes(32)),
    }
    authn = new Authenticator(
      t.db,
      events,
      deps.sealer,
      { threshold: THRESHOLD, duration: 60_000, ipLimit: 1000 },
      (realm) => relyingPartyFor(PUBLIC_URL, realm),
    )
    await createRealm(deps, OPERATOR, { id: 'acme', mfaPolicy: 'everyone' })
    await createRealm(deps, OPERATOR, { id: 'globex', mfaPolicy: 'everyone' })
    for (const [realm, name] of [
      ['acme', 'alice'],
      ['acme', 'bob'],
      ['acme', 'dave'],
      ['acme', 'erin'],
      ['globex', 'carol'],
    ] as const)
      users[name] = (
        await createUser(deps, OPERATOR, realm, {
          username: name,
          password: PASSWORD,
          mustEnrollMfa: true,
        })
      ).id
  })
  after(() => t.close())

  const lastEvent = () => events.events.at(-1) as SecurityEvent
  const failedLogins = async (id: string) =>
    (
      await t.db.query<{ failed_logins: number }>(
        'SELECT failed_logins FROM iam.users WHERE id = $1',
        [id],
      )
    ).rows[0]!.failed_logins

  /** Registers a passkey of `who` on `device`; returns nothing, asserts success. */
  async function enrol(realm: string, who: string, device: SoftAuthenticator, name = 'laptop') {
    const b = binding()
    const options = await authn.passkeys.beginRegistration(realm, users[who]!, b)
    assert.ok(options)
    const r = await authn.passkeys.finishRegistration(
      realm,
      users[who]!,
      b,
      JSON.stringify(device.create(options)),
      name,
      req,
      { codes: ['aaaa-bbbb-cccc-dddd'], when: 'always' },
    )
    assert.equal(r.ok, true, JSON.stringify(r))
    return r
  }

  /** One authentication ceremony; `bend` lets the attacker change what the device sends. */
  async function authenticate(
    realm: string,
    who: string,
    device: SoftAuthenticator,
    bend: Parameters<SoftAuthenticator['get']>[1] = {},
    credential?: SoftAuthenticator['credentials'][number],
  ) {
    const b = binding()
    const options = await authn.passkeys.beginAuthentication(realm, users[who]!, b)
    assert.ok(options, `${who} has a passkey`)
    const response = device.get(options, bend, credential)
    return {
      result: await authn.passkeys.finishAuthentication(realm, users[who]!, b, response, req),
      response,
      binding: b,
    }
  }

  const alicePhone = new SoftAuthenticator(ORIGIN)

  test('registration stores the credential (no secret), ends forced enrolment, issues recovery codes', async () => {
    const b = binding()
    const options = await authn.passkeys.beginRegistration('acme', users.alice!, b)
    assert.ok(options)
    assert.equal(options.rp.id, 'login.dflare.test')
    assert.equal(options.attestation, 'none')
    assert.equal(options.authenticatorSelection?.userVerification, 'preferred')
    assert.deepEqual(options.excludeCredentials, [])
    const response = alicePhone.create(options)
    const r = await authn.passkeys.finishRegistration(
      'acme',
      users.alice!,
      b,
      JSON.stringify(response),
      ' Alice’s phone \u0000',
      req,
      { codes: ['aaaa-bbbb-cccc-dddd'], when: 'always' },
    )
    assert.ok(r.ok)
    assert.equal(r.amr, 'hwk')
    assert.equal(r.recoveryCodesIssued, true)
    assert.equal(r.passkey.name, 'Alice’s phone')
    const { rows } = await t.db.query<Record<string, unknown>>(
      'SELECT * FROM iam.webauthn_credentials WHERE realm = $1 AND user_id = $2',
      ['acme', users.alice],
    )
    assert.equal(rows.length, 1)
    const row = rows[0]!
    assert.equal(row.credential_id, response.id)
    assert.ok(Buffer.isBuffer(row.public_key) && (row.public_key as Buffer).length > 64)
    assert.equal(Number(row.counter), 0)
    assert.deepEqual(row.transports, ['internal'])
    assert.equal(row.device_type, 'singleDevice')
    assert.equal(row.backed_up, false)
    assert.match(String(row.aaguid), /^[0-9a-f-]{36}$/)
    assert.ok(row.created_at instanceof Date)
    assert.equal(row.last_used_at, null)
    const user = await t.db.query<{ must_enroll_mfa: boolean }>(
      'SELECT must_enroll_mfa FROM iam.users WHERE id = $1',
      [users.alice],
    )
    assert.equal(user.rows[0]!.must_enroll_mfa, false)
    assert.deepEqual(await authn.factors('acme', users.alice!), {
      totp: false,
      passkeys: 1,
      recoveryCodes: 1,
    })
    const e = lastEvent()
    assert.equal(e.type, 'auth.mfa.enrolled')
    assert.equal(e.action, 'mfa:EnrollWebAuthn')
    assert.deepEqual(e.resource, { type: 'WebAuthnCredential', id: r.passkey.id })
    // The challenge was single use.
    const again = await authn.passkeys.finishRegistration(
      'acme',
      users.alice!,
      b,
      JSON.stringify(response),
      'x',
      req,
    )
    assert.deepEqual(again, { ok: false, reason: 'no_challenge' })
    // The next login asks for the second factor.
    assert.deepEqual(await authn.password('acme', 'alice', PASSWORD, req), {
      ok: true,
      userId: users.alice,
      mfa: 'verify',
    })
  })

  test('authentication: the second factor with amr hwk; the counter and last use are stored', async () => {
    const { result } = await authenticate('acme', 'alice', alicePhone)
    assert.equal(result.ok, true, JSON.stringify(result))
    assert.ok(result.ok && result.amr === 'hwk')
    const e = lastEvent()
    assert.equal(e.type, 'auth.mfa')
    assert.equal(e.outcome, 'success')
    assert.equal(e.details?.method, 'webauthn')
    const [info] = await listWebAuthnCredentials(deps, 'acme', users.alice!)
    assert.ok(info?.lastUsedAt)
    const { rows } = await t.db.query<{ counter: number }>(
      'SELECT counter FROM iam.webauthn_credentials WHERE user_id = $1',
      [users.alice],
    )
    assert.equal(Number(rows[0]!.counter), 1)
    assert.equal(await failedLogins(users.alice!), 0)
  })

  test('a synced passkey (backup eligible and backed up) gives amr swk', async () => {
    const cloud = new SoftAuthenticator(ORIGIN, { synced: true })
    const reg = await enrol('acme', 'dave', cloud)
    assert.ok(reg.ok && reg.amr === 'swk' && reg.passkey.deviceType === 'multiDevice')
    assert.equal(reg.ok && reg.passkey.backedUp, true)
    const { result } = await authenticate('acme', 'dave', cloud)
    assert.ok(result.ok && result.amr === 'swk')
  })

  test('attacker: an assertion made for another origin is refused', async () => {
    const before = await failedLogins(users.alice!)
    const { result } = await authenticate('acme', 'alice', alicePhone, {
      origin: 'https://login.dflare.test.evil.example',
    })
    assert.deepEqual(result, { ok: false, reason: 'origin_mismatch' })
    const e = lastEvent()
    assert.equal(e.type, 'auth.mfa')
    assert.equal(e.outcome, 'failure')
    assert.equal(e.reason, 'webauthn_origin_mismatch')
    assert.equal(await failedLogins(users.alice!), before + 1)
  })

  test('attacker: an assertion for another RP ID is refused', async () => {
    const { result } = await authenticate('acme', 'alice', alicePhone, { rpId: 'evil.example' })
    assert.deepEqual(result, { ok: false, reason: 'rp_id_mismatch' })
    assert.equal(lastEvent().reason, 'webauthn_rp_id_mismatch')
    // Registration checks both as well.
    for (const [bend, reason] of [
      [{ origin: 'https://evil.example' }, 'origin_mismatch'],
      [{ rpId: 'evil.example' }, 'rp_id_mismatch'],
      [{ type: 'webauthn.get' }, 'wrong_type'],
      [{ userPresent: false }, 'user_not_present'],
    ] as const) {
      const b = binding()
      const options = await authn.passkeys.beginRegistration('acme', users.erin!, b)
      const r = await authn.passkeys.finishRegistration(
        'acme',
        users.erin!,
        b,
        new SoftAuthenticator(ORIGIN).create(options, bend),
        'x',
        req,
      )
      assert.deepEqual(r, { ok: false, reason }, JSON.stringify(bend))
      assert.equal(lastEvent().reason, `webauthn_enrolment_${reason}`)
    }
    assert.equal((await listWebAuthnCredentials(deps, 'acme', users.erin!)).length, 0)
  })

  test('attacker: a replayed assertion, or one for an older challenge, is refused', async () => {
    const ok = await authenticate('acme', 'alice', alicePhone)
    assert.equal(ok.result.ok, true)
    // The same response again, on the same binding: its challenge was consumed.
    const replay = await authn.passkeys.finishAuthentication(
      'acme',
      users.alice!,
      ok.binding,
      ok.response,
      req,
    )
    assert.deepEqual(replay, { ok: false, reason: 'no_challenge' })
    // A fresh challenge issued, the old response sent: wrong challenge.
    await authn.passkeys.beginAuthentication('acme', users.alice!, ok.binding)
    const stale = await authn.passkeys.finishAuthentication(
      'acme',
      users.alice!,
      ok.binding,
      ok.response,
      req,
    )
    assert.deepEqual(stale, { ok: false, reason: 'challenge_mismatch' })
    // A challenge bound to one interaction does not serve another.
    const b = binding()
    const options = await authn.passkeys.beginAuthentication('acme', users.alice!, b)
    const elsewhere = await authn.passkeys.finishAuthentication(
      'acme',
      users.alice!,
      binding(),
      alicePhone.get(options),
      req,
    )
    assert.deepEqual(elsewhere, { ok: false, reason: 'no_challenge' })
    // Nor does an expired one.
    const b2 = binding()
    const o2 = await authn.passkeys.beginAuthentication('acme', users.alice!, b2)
    await t.db.query(
      `UPDATE iam.webauthn_challenges SET expires_at = now() - interval '1 second'
       WHERE binding = $1`,
      [`interaction:${b2.interaction}`],
    )
    const expired = await authn.passkeys.finishAuthentication(
      'acme',
      users.alice!,
      b2,
      alicePhone.get(o2),
      req,
    )
    assert.deepEqual(expired, { ok: false, reason: 'no_challenge' })
    assert.equal(
      (
        await t.db.query('SELECT 1 FROM iam.webauthn_challenges WHERE binding = $1', [
          `interaction:${b2.interaction}`,
        ])
      ).rows.length,
      0,
      'a checked challenge is gone',
    )
  })

  test('attacker: a signature counter that does not grow (cloned authenticator) is refused and reported', async () => {
    const { rows } = await t.db.query<{ id: string; counter: number }>(
      'SELECT id, counter FROM iam.webauthn_credentials WHERE user_id = $1',
      [users.alice],
    )
    const stored = Number(rows[0]!.counter)
    assert.ok(stored >= 2)
    for (const counter of [stored, stored - 1]) {
      const { result } = await authenticate('acme', 'alice', alicePhone, { counter })
      assert.deepEqual(result, { ok: false, reason: 'counter_regression' })
      const e = lastEvent()
      assert.equal(e.reason, 'webauthn_counter_regression')
      assert.deepEqual(e.details, {
        credential: rows[0]!.id,
        storedCounter: stored,
        counter,
      })
    }
    const after = await t.db.query<{ counter: number }>(
      'SELECT counter FROM iam.webauthn_credentials WHERE user_id = $1',
      [users.alice],
    )
    assert.equal(Number(after.rows[0]!.counter), stored, 'the stored counter is unchanged')
    // The genuine authenticator, one step ahead, still works.
    const { result } = await authenticate('acme', 'alice', alicePhone, { counter: stored + 1 })
    assert.equal(result.ok, true)
  })

  test("attacker: another user's credential, in the same realm or another, is not a factor for this user", async () => {
    const bobKey = new SoftAuthenticator(ORIGIN)
    await enrol('acme', 'bob', bobKey)
    const carolKey = new SoftAuthenticator(ORIGIN)
    await enrol('globex', 'carol', carolKey)
    for (const key of [bobKey, carolKey]) {
      // The attacker answers alice's challenge with a credential they hold.
      const { result } = await authenticate('acme', 'alice', alicePhone, {}, key.credentials[0])
      assert.deepEqual(result, { ok: false, reason: 'unknown_credential' })
      assert.equal(lastEvent().reason, 'webauthn_unknown_credential')
    }
    // A ceremony begun in globex cannot be finished in acme: carol is nobody there (refused as
    // locked, fail closed), and challenges are per realm anyway.
    const b = binding()
    const options = await authn.passkeys.beginAuthentication('globex', users.carol!, b)
    const crossRealm = await authn.passkeys.finishAuthentication(
      'acme',
      users.carol!,
      b,
      carolKey.get(options),
      req,
    )
    assert.deepEqual(crossRealm, { ok: false, reason: 'locked' })
    // A credential id copied from alice and registered in globex with the attacker's own key
    // (realms keep their own credentials) lets nobody into acme: acme checks alice's public key.
    const aliceId = alicePhone.credentials[0]!.id
    const b2 = binding()
    const mallory = new SoftAuthenticator(ORIGIN)
    const o2 = await authn.passkeys.beginRegistration('globex', users.carol!, b2)
    const copied = await authn.passkeys.finishRegistration(
      'globex',
      users.carol!,
      b2,
      mallory.create(o2, { credentialId: aliceId }),
      'copy',
      req,
    )
    assert.equal(copied.ok, true)
    const { result } = await authenticate(
      'acme',
      'alice',
      mallory,
      {},
      {
        ...mallory.credentials[0]!,
        userHandle: undefined,
      },
    )
    assert.deepEqual(result, { ok: false, reason: 'invalid_signature' })
    const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const forged = await authenticate('acme', 'alice', alicePhone, {
      signWith: attacker.privateKey,
    })
    assert.deepEqual(forged.result, { ok: false, reason: 'invalid_signature' })
  })

  test('attacker: a user handle naming someone else, or a duplicate credential id, is refused', async () => {
    const cred = alicePhone.credentials[0]!
    const { result } = await authenticate(
      'acme',
      'alice',
      alicePhone,
      {},
      {
        ...cred,
        userHandle: Buffer.from(randomBytes(16)).toString('base64url'),
      },
    )
    assert.deepEqual(result, { ok: false, reason: 'user_handle_mismatch' })
    // Registering alice's credential id again, for bob: the realm already has it.
    const b = binding()
    const options = await authn.passkeys.beginRegistration('acme', users.bob!, b)
    const r = await authn.passkeys.finishRegistration(
      'acme',
      users.bob!,
      b,
      new SoftAuthenticator(ORIGIN).create(options, { credentialId: cred.id }),
      'x',
      req,
    )
    assert.deepEqual(r, { ok: false, reason: 'duplicate_credential' })
    assert.equal((await listWebAuthnCredentials(deps, 'acme', users.bob!)).length, 1)
    // Malformed input is refused without reaching the verifier (each try counts as a failure).
    await t.db.query('UPDATE iam.users SET failed_logins = 0 WHERE id = $1', [users.alice])
    for (const junk of [
      '',
      'not json',
      '{"id":"x"}',
      '[]',
      { id: 'a', rawId: 'b', response: {} },
    ]) {
      const b2 = binding()
      await authn.passkeys.beginAuthentication('acme', users.alice!, b2)
      assert.deepEqual(
        await authn.passkeys.finishAuthentication('acme', users.alice!, b2, junk, req),
        { ok: false, reason: 'invalid_response' },
      )
    }
  })

  test('failures count towards the lockout; a locked account is refused before any check', async () => {
    await t.db.query('UPDATE iam.users SET failed_logins = 0 WHERE id = $1', [users.bob])
    const bobKey = new SoftAuthenticator(ORIGIN)
    await enrol('acme', 'bob', bobKey, 'second key')
    for (let i = 0; i < THRESHOLD; i++) {
      const { result } = await authenticate('acme', 'bob', bobKey, {
        origin: 'https://evil.example',
      })
      assert.equal(result.ok, false)
    }
    assert.ok(events.events.some((e) => e.type === 'auth.lockout'))
    const { result } = await authenticate('acme', 'bob', bobKey)
    assert.deepEqual(result, { ok: false, reason: 'locked' })
  })

  test('an admin removes a passkey; events never carry key material or challenges', async () => {
    const [cred] = await listWebAuthnCredentials(deps, 'acme', users.dave!)
    assert.ok(cred)
    assert.ok(!('publicKey' in cred) && !('credentialId' in cred))
    await deleteWebAuthnCredential(deps, OPERATOR, 'acme', users.dave!, cred.id)
    assert.equal((await listWebAuthnCredentials(deps, 'acme', users.dave!)).length, 0)
    assert.equal(lastEvent().type, 'iam.webauthn.deleted')
    await assert.rejects(
      deleteWebAuthnCredential(deps, OPERATOR, 'acme', users.alice!, cred.id),
      /No such WebAuthn credential/,
    )
    const keys = await t.db.query<{ public_key: Buffer; credential_id: string }>(
      'SELECT public_key, credential_id FROM iam.webauthn_credentials',
    )
    const text = JSON.stringify(events.events)
    for (const k of keys.rows) {
      assert.ok(!text.includes(k.public_key.toString('base64url')))
      assert.ok(!text.includes(k.credential_id))
    }
    assert.ok(!text.includes(PASSWORD))
  })
})
