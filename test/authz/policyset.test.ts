import assert from 'node:assert/strict'
import { test } from 'node:test'
import { contextFromJson, entitiesFromJson } from '../../src/authz/cedar/entities.ts'
import { parsePolicySetText } from '../../src/authz/cedar/parse.ts'
import { CompiledPolicySet, evaluateSets } from '../../src/authz/cedar/policyset.ts'
import { EntityValue } from '../../src/authz/cedar/values.ts'

const set = (text: string) =>
  new CompiledPolicySet(parsePolicySetText(text).map(({ id, json }) => ({ id, json })))

const alice = new EntityValue('User', 'alice')
const read = new EntityValue('Action', 'read')
const doc = new EntityValue('Doc', 'd1')
const request = { principal: alice, action: read, resource: doc, context: contextFromJson({}) }

const world = (aliceGroups: string[], docParents: string[] = ['f1']) =>
  entitiesFromJson([
    {
      uid: { type: 'User', id: 'alice' },
      attrs: {},
      parents: aliceGroups.map((id) => ({ type: 'Group', id })),
    },
    ...['admins', 'staff'].map((id) => ({ uid: { type: 'Group', id }, attrs: {}, parents: [] })),
    {
      uid: { type: 'Doc', id: 'd1' },
      attrs: {},
      parents: docParents.map((id) => ({ type: 'Folder', id })),
    },
    { uid: { type: 'Folder', id: 'f1' }, attrs: {}, parents: [] },
    { uid: { type: 'Folder', id: 'f2' }, attrs: {}, parents: [] },
    {
      uid: { type: 'Action', id: 'read' },
      attrs: {},
      parents: [{ type: 'Action', id: 'readers' }],
    },
    { uid: { type: 'Action', id: 'readers' }, attrs: {}, parents: [] },
  ])

test('policies reached through an ancestor follow a changed hierarchy (no stale allow)', () => {
  const policies = set(`
    @id("admins") permit (principal in Group::"admins", action, resource);
    @id("f1") permit (principal, action in [Action::"readers"], resource in Folder::"f1");`)
  // The same compiled set evaluated against successive snapshots, as the PDP does when a role
  // binding or a parent changes: the applicable policies are re-derived for the new entities.
  assert.deepEqual(policies.evaluate(request, world(['admins'])).determining.sort(), [
    'admins',
    'f1',
  ])
  assert.deepEqual(policies.evaluate(request, world(['staff'])).determining, ['f1'])
  assert.equal(policies.evaluate(request, world(['staff'], ['f2'])).allow, false)
  assert.deepEqual(policies.evaluate(request, world(['admins'], ['f2'])).determining, ['admins'])
})

test('an indexed `is … in` scope still checks the entity type', () => {
  const policies = set(`@id("p") permit (principal is Robot in Group::"admins", action, resource);`)
  assert.equal(policies.evaluate(request, world(['admins'])).allow, false)
})

test('an indexed `==` scope does not match an entity that merely has it as an ancestor', () => {
  const policies = set(`@id("p") permit (principal == Group::"admins", action, resource);`)
  assert.equal(policies.evaluate(request, world(['admins'])).allow, false)
})

test('several sets: forbid in one overrides permit in another, each policy counted once', () => {
  const a = set(
    `@id("a") permit (principal, action in [Action::"read", Action::"readers"], resource);`,
  )
  const b = set(`@id("b") forbid (principal in Group::"staff", action, resource in Folder::"f1");`)
  const entities = world(['staff'])
  assert.deepEqual(evaluateSets([a], request, entities).determining, ['a'])
  const both = evaluateSets([a, b], request, entities)
  assert.equal(both.allow, false)
  assert.deepEqual(both.determining, ['b'])
})

test('one entity evaluated against many sets gets each set its own applicable policies', () => {
  // More sets than an entity's memo holds, so the overflow path is exercised too.
  const sets = Array.from({ length: 7 }, (_, i) =>
    set(
      `@id("s${i}") permit (principal in Group::"${i % 2 ? 'admins' : 'staff'}", action, resource);`,
    ),
  )
  const entities = world(['admins'])
  for (let round = 0; round < 2; round++)
    sets.forEach((s, i) => {
      assert.deepEqual(s.evaluate(request, entities).determining, i % 2 ? [`s${i}`] : [])
    })
})

test('plain scopes: `==` is not `in`, in every slot', () => {
  const entities = world(['admins'])
  const allow = (text: string) => set(text).evaluate(request, entities).allow
  assert.equal(allow(`@id("p") permit (principal, action == Action::"readers", resource);`), false)
  assert.equal(allow(`@id("p") permit (principal, action in Action::"readers", resource);`), true)
  assert.equal(allow(`@id("p") permit (principal, action, resource == Folder::"f1");`), false)
  assert.equal(allow(`@id("p") permit (principal, action, resource in Folder::"f1");`), true)
  assert.equal(
    allow(`@id("p") permit (principal in Group::"admins", action, resource == Doc::"d1");`),
    true,
  )
  assert.equal(
    allow(`@id("p") permit (principal in Group::"admins", action, resource in Folder::"f2");`),
    false,
  )
})

test('constant extension literals: parsed once, and an invalid one still errors when evaluated', () => {
  const ctx = (ip: string) => ({
    ...request,
    context: contextFromJson({ ip: { __extn: { fn: 'ip', arg: ip } } }),
  })
  const entities = world([])
  const inRange = set(
    `@id("p") permit (principal, action, resource) when { context.ip.isInRange(ip("10.0.0.0/8")) };`,
  )
  assert.equal(inRange.evaluate(ctx('10.1.2.3'), entities).allow, true)
  assert.equal(inRange.evaluate(ctx('192.0.2.1'), entities).allow, false)
  const bad = set(
    `@id("p") permit (principal, action, resource) when { context.ip.isInRange(ip("not an ip")) };`,
  )
  for (let i = 0; i < 2; i++) {
    const r = bad.evaluate(ctx('10.1.2.3'), entities)
    assert.equal(r.allow, false)
    assert.deepEqual(
      r.errors.map((e) => e.policy),
      ['p'],
    )
  }
})
