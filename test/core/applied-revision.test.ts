import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AppliedRevision } from '../../src/core/revisions.ts'

test('a waiter is released exactly when its revision is applied, never earlier', async () => {
  const applied = new AppliedRevision()
  let released = false
  const waiting = applied.reached(3, 10_000).then((ok) => {
    released = true
    return ok
  })
  applied.advance(2)
  await new Promise((r) => setImmediate(r))
  assert.equal(released, false, 'revision 2 does not satisfy a wait for 3')
  applied.advance(1)
  assert.equal(applied.value, 2, 'never goes backwards')
  applied.advance(3)
  assert.equal(await waiting, true)
  assert.equal(await applied.reached(3, 0), true, 'already applied: no wait')
})

test('a revision that never arrives times out as false', async () => {
  const applied = new AppliedRevision()
  assert.equal(await applied.reached(1, 5), false)
  applied.advance(1) // a late notice releases nothing stale
  assert.equal(applied.value, 1)
})
