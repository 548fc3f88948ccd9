import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Problem } from '../../src/core/errors.ts'
import { Allocator } from '../../src/isolation/allocator.ts'
import { isolationMigrations } from '../../src/isolation/migrations.ts'
import { DEFAULT_POOLS } from '../../src/isolation/pools.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'

describe('allocator', () => {
  let t: TestDatabase
  const now = new Date('2026-01-01T00:00:00Z')
  const alloc = new Allocator(
    { default: { ...DEFAULT_POOLS, pkey: { lo: 0x7ffd, hi: 0x7ffe } } },
    60_000,
  )
  before(async () => {
    t = await migratedDatabase([isolationMigrations])
  })
  after(() => t.close())
  const pkey = (tenant: string, at = now) =>
    t.db.transaction(async (tx) => {
      await alloc.lockFabric(tx, 'default', at)
      return alloc.number(tx, {
        fabric: 'default',
        pool: 'pkey',
        tenant,
        purpose: 'compute',
        now: at,
      })
    })

  test('hands out free values, stably per tenant, and never 0x7FFF', async () => {
    assert.equal(await pkey('a'), 0x7ffd)
    assert.equal(await pkey('a'), 0x7ffd)
    assert.equal(await pkey('b'), 0x7ffe)
    await assert.rejects(pkey('c'), (e: Problem) => {
      assert.equal(e.status, 409)
      assert.match(e.detail!, /Pool pkey of fabric default \(32765-32766\)/)
      return true
    })
  })

  test('released values stay in quarantine, then become free', async () => {
    await t.db.transaction((tx) =>
      alloc.releaseExcept(tx, 'a', { numbers: new Set(), claims: new Set() }, now),
    )
    await assert.rejects(
      pkey('c', new Date(now.getTime() + 59_999)),
      (e: Problem) => e.status === 409,
    )
    assert.equal(await pkey('c', new Date(now.getTime() + 60_000)), 0x7ffd)
  })

  test('a tenant takes back its own quarantined value', async () => {
    const at = new Date(now.getTime() + 61_000)
    await t.db.transaction((tx) =>
      alloc.releaseExcept(tx, 'b', { numbers: new Set(), claims: new Set() }, at),
    )
    assert.equal(await pkey('b', at), 0x7ffe)
  })

  test('names are unique per kind and scope, quarantined after release', async () => {
    const claim = (tenant: string, scope: string, at = now) =>
      t.db.transaction((tx) =>
        alloc.claim(tx, { kind: 'k8s-namespace', scope, name: 't-x', tenant, now: at }),
      )
    await claim('a', 'k8s-a')
    await claim('a', 'k8s-a')
    await claim('b', 'k8s-b')
    await assert.rejects(claim('b', 'k8s-a'), (e: Problem) =>
      /belongs to another tenant/.test(e.detail!),
    )
    await t.db.transaction((tx) =>
      alloc.releaseExcept(tx, 'a', { numbers: new Set(), claims: new Set() }, now),
    )
    await assert.rejects(claim('b', 'k8s-a'), (e: Problem) => /quarantine/.test(e.detail!))
    await claim('b', 'k8s-a', new Date(now.getTime() + 60_000))
  })

  test('overlapping networks of another tenant are refused', async () => {
    await t.db.transaction((tx) =>
      alloc.claim(tx, { kind: 'cidr', scope: 'default', name: '10.0.0.0/16', tenant: 'a', now }),
    )
    await assert.rejects(
      t.db.transaction((tx) =>
        alloc.assertNoOverlap(tx, { fabric: 'default', cidr: '10.0.5.0/24', tenant: 'b', now }),
      ),
      (e: Problem) => e.status === 409,
    )
    await t.db.transaction((tx) =>
      alloc.assertNoOverlap(tx, { fabric: 'default', cidr: '10.1.0.0/24', tenant: 'b', now }),
    )
    await t.db.transaction((tx) =>
      alloc.assertNoOverlap(tx, { fabric: 'default', cidr: '10.0.5.0/24', tenant: 'a', now }),
    )
  })
})
