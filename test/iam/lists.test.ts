import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import {
  createDomain,
  createGroup,
  createProject,
  type KeysetPage,
  listDomains,
  listGroups,
  listProjects,
} from '../../src/iam/admin/directory.ts'
import { listRealms } from '../../src/iam/admin/realms.ts'
import { createUser, listUsers } from '../../src/iam/admin/users.ts'
import { type Harness, OPERATOR, seedRealm, startHarness } from './harness.ts'

describe('users and realms are listed a page at a time by the database', () => {
  let h: Harness
  const names = new Set<string>()
  before(async () => {
    h = await startHarness()
    await seedRealm(h, 'acme')
    await seedRealm(h, 'other')
    const gen = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,11}$/)
    for (const n of fc.sample(gen, { numRuns: 60, seed: 7 })) names.add(n.toLowerCase())
    for (const username of names) await createUser(h.iam.admin, OPERATOR, 'acme', { username })
    await createUser(h.iam.admin, OPERATOR, 'other', { username: 'zz-other-tenant' })
  })
  after(() => h.close())

  test('walking every page with any limit yields each user once, in order, never another realm', async () => {
    const all = (await listUsers(h.iam.admin, 'acme')).map((u) => u.username)
    assert.deepEqual(all, [...all].sort(), 'byte order, which is what cursors resume from')
    assert.ok(!all.includes('zz-other-tenant'))
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 25 }), async (limit) => {
        const seen: string[] = []
        let after: string | undefined
        for (;;) {
          const page = await listUsers(h.iam.admin, 'acme', { after, limit })
          assert.ok(page.length <= limit)
          seen.push(...page.map((u) => u.username))
          if (page.length < limit) break
          after = page.at(-1)!.username
        }
        assert.deepEqual(seen, all)
      }),
      { numRuns: 15 },
    )
  })

  test('a prefix filter returns exactly the matching users', async () => {
    const all = (await listUsers(h.iam.admin, 'acme')).map((u) => u.username)
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...all), fc.nat(3), async (name, cut) => {
        const prefix = name.slice(0, Math.max(1, name.length - cut))
        const got = (await listUsers(h.iam.admin, 'acme', { prefix })).map((u) => u.username)
        assert.deepEqual(
          got,
          all.filter((u) => u.startsWith(prefix)),
        )
      }),
      { numRuns: 20 },
    )
    // Pattern characters are literal: `%` and `_` match only themselves.
    assert.deepEqual(await listUsers(h.iam.admin, 'acme', { prefix: '%' }), [])
  })

  test('realms page by id with a keyset cursor', async () => {
    const all = (await listRealms(h.iam.admin)).map((r) => r.id)
    assert.ok(all.includes('acme') && all.includes('other'))
    for (let limit = 1; limit <= all.length; limit++) {
      const seen: string[] = []
      let after: string | undefined
      for (;;) {
        const page = await listRealms(h.iam.admin, { after, limit })
        seen.push(...page.map((r) => r.id))
        if (page.length < limit) break
        after = page.at(-1)!.id
      }
      assert.deepEqual(seen, all)
    }
  })

  test('domains, groups and projects page by id, within their realm and filter', async () => {
    for (const id of ['d-b', 'd-a', 'd-c'])
      await createDomain(h.iam.admin, OPERATOR, 'acme', { id, name: id })
    for (const id of ['g3', 'g1', 'g2', 'g10'])
      await createGroup(h.iam.admin, OPERATOR, 'acme', { id, name: id })
    for (const [id, domainId] of [
      ['p2', 'd-a'],
      ['p1', 'd-b'],
      ['p3', 'd-a'],
      ['p0', 'd-c'],
    ])
      await createProject(h.iam.admin, OPERATOR, 'acme', {
        id: id!,
        domainId: domainId!,
        name: id!,
      })
    await createGroup(h.iam.admin, OPERATOR, 'other', { id: 'g0', name: 'elsewhere' })
    const walk = async (list: (page: KeysetPage) => Promise<{ id: string }[]>, limit: number) => {
      const seen: string[] = []
      let after: string | undefined
      for (;;) {
        const page = await list({ after, limit })
        seen.push(...page.map((r) => r.id))
        if (page.length < limit) return seen
        after = page.at(-1)!.id
      }
    }
    for (const limit of [1, 2, 3, 10]) {
      assert.deepEqual(await walk((p) => listDomains(h.iam.admin, 'acme', p), limit), [
        'd-a',
        'd-b',
        'd-c',
      ])
      assert.deepEqual(await walk((p) => listGroups(h.iam.admin, 'acme', p), limit), [
        'g1',
        'g10',
        'g2',
        'g3',
      ])
      assert.deepEqual(await walk((p) => listProjects(h.iam.admin, 'acme', 'd-a', p), limit), [
        'p2',
        'p3',
      ])
    }
  })
})
