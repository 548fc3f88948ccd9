import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import * as client from 'openid-client'
import { Problem } from '../../src/core/errors.ts'
import { createClient } from '../../src/iam/admin/clients.ts'
import {
  addMember,
  createDomain,
  createGroup,
  createProject,
  deleteDomain,
} from '../../src/iam/admin/directory.ts'
import { createRealm, updateRealm } from '../../src/iam/admin/realms.ts'
import { createUser, updateUser } from '../../src/iam/admin/users.ts'
import { type Harness, OPERATOR, seedRealm, startHarness } from './harness.ts'

describe('management functions: validation, events, authz mirror, realm settings', () => {
  let h: Harness
  let secret: string
  before(async () => {
    h = await startHarness()
    secret = (await seedRealm(h, 'acme')).clientSecret
  })
  after(() => h.close())

  test('directory changes mirror Cedar entities and record one event each', async () => {
    const before = h.events.events.length
    await createDomain(h.iam.admin, OPERATOR, 'acme', { id: 'research', name: 'Research' })
    await createProject(h.iam.admin, OPERATOR, 'acme', {
      id: 'llm',
      domainId: 'research',
      name: 'LLM',
    })
    await createGroup(h.iam.admin, OPERATOR, 'acme', { id: 'ops', name: 'Operators' })
    const bob = await createUser(h.iam.admin, OPERATOR, 'acme', {
      username: 'bob',
      domainId: 'research',
    })
    await addMember(h.iam.admin, OPERATOR, 'acme', 'ops', bob.id)
    const e = h.entities.entities
    assert.deepEqual(e.get('Dflare::Project/acme/llm')?.parents, [
      { type: 'Dflare::Domain', id: 'acme/research' },
    ])
    assert.deepEqual(e.get(`Dflare::User/acme/${bob.id}`)?.parents, [
      { type: 'Dflare::Group', id: 'acme/ops' },
      { type: 'Dflare::Domain', id: 'acme/research' },
    ])
    assert.ok(e.get('Dflare::ServiceAccount/acme/svc'))
    assert.equal(h.events.events.length - before, 5)
    await assert.rejects(
      deleteDomain(h.iam.admin, OPERATOR, 'acme', 'research'),
      /still has projects/,
    )
  })

  test('invalid input is one 400 problem naming the fields; duplicates are 409', async () => {
    await assert.rejects(
      createRealm(h.iam.admin, OPERATOR, { id: 'Bad Realm!' }),
      (err: unknown) => {
        assert.ok(err instanceof Problem)
        assert.equal(err.status, 400)
        assert.equal((err.extensions.errors as { field: string }[])[0]!.field, 'id')
        return true
      },
    )
    await assert.rejects(createRealm(h.iam.admin, OPERATOR, { id: 'acme' }), (err: unknown) => {
      assert.equal((err as Problem).status, 409)
      return true
    })
    await assert.rejects(
      createUser(h.iam.admin, OPERATOR, 'acme', { username: 'weak', password: 'password123' }),
      /too common/,
    )
    await assert.rejects(
      createClient(h.iam.admin, OPERATOR, 'acme', {
        name: 'x',
        serviceAccount: true,
        authMethod: 'none',
      }),
      (err: unknown) => (err as Problem).status === 400,
    )
    await assert.rejects(
      createClient(h.iam.admin, OPERATOR, 'acme', {
        name: 'x',
        redirectUris: ['http://evil.example/cb'],
      }),
      (err: unknown) => (err as Problem).status === 400,
    )
  })

  test('a realm access-token lifetime change applies at once and never exceeds 15 minutes', async () => {
    await updateRealm(h.iam.admin, OPERATOR, 'acme', { accessTokenTtl: 60 })
    const config = await h.discover('acme', 'svc', client.ClientSecretBasic(secret))
    const t = await client.clientCredentialsGrant(config, { scope: 'api' })
    const claims = await h.iam.service.verifyAccessToken(t.access_token, 'acme')
    assert.equal(claims.exp - claims.iat, 60)
    assert.equal(await h.iam.service.maxAccessTokenTtl('acme'), 60)
    await assert.rejects(
      updateRealm(h.iam.admin, OPERATOR, 'acme', { accessTokenTtl: 3600 }),
      /Invalid request/,
    )
  })

  test('a disabled realm has no issuer; a disabled user cannot refresh', async () => {
    await createRealm(h.iam.admin, OPERATOR, { id: 'gone' })
    await updateRealm(h.iam.admin, OPERATOR, 'gone', { disabled: true })
    assert.equal(await h.iam.service.realmExists('gone'), false)
    const res = await h.fetch(`${h.issuer('gone').href}/.well-known/openid-configuration`)
    assert.equal(res.status, 404)
    const bob = await createUser(h.iam.admin, OPERATOR, 'acme', { username: 'carl' })
    const disabled = await updateUser(h.iam.admin, OPERATOR, 'acme', bob.id, { disabled: true })
    assert.equal(disabled.disabled, true)
  })
})
