import assert from 'node:assert/strict'
import { test } from 'node:test'
import { enterRequest, FreshRead } from '../../src/core/fresh-read.ts'

/** A source whose reads the test completes by hand, recording what each read saw. */
function source() {
  let value = 0
  const started: { saw: number; resolve: (v: number) => void; reject: (e: Error) => void }[] = []
  return {
    set(v: number) {
      value = v
    },
    started,
    read: () =>
      new Promise<number>((resolve, reject) => {
        // The value is sampled when the read starts, like a query's snapshot.
        const saw = value
        started.push({ saw, resolve: () => resolve(saw), reject })
      }),
  }
}

const tick = () => new Promise((r) => setImmediate(r))

test('a caller never gets a read that started before it called', async () => {
  const s = source()
  const fresh = new FreshRead(s.read)
  const a = fresh.read()
  assert.equal(s.started.length, 1)
  await tick()
  // A change commits while the first read is in flight; b calls after it.
  s.set(1)
  const b = fresh.read()
  const c = fresh.read()
  assert.equal(s.started.length, 1, 'b and c wait for the next read')
  s.started[0]!.resolve(0)
  assert.equal(await a, 0)
  await tick()
  assert.equal(s.started.length, 2, 'one read serves both waiting callers')
  s.started[1]!.resolve(1)
  assert.equal(await b, 1, 'b sees the change that committed before it called')
  assert.equal(await c, 1)
})

test('without contention every call reads', async () => {
  const s = source()
  const fresh = new FreshRead(s.read)
  for (let i = 0; i < 3; i++) {
    s.set(i)
    const p = fresh.read()
    s.started[i]!.resolve(i)
    assert.equal(await p, i)
  }
  assert.equal(s.started.length, 3)
})

test('a failed read fails its callers only; the next callers read again', async () => {
  const s = source()
  const fresh = new FreshRead(s.read)
  const a = fresh.read()
  await tick()
  const b = fresh.read()
  s.started[0]!.reject(new Error('down'))
  await assert.rejects(a, /down/)
  await tick()
  assert.equal(s.started.length, 2, 'b got its own read, started after the failure')
  s.started[1]!.resolve(0)
  assert.equal(await b, 0)
})

test('callers in the same synchronous run share the read it started; later ones do not', async () => {
  const s = source()
  const fresh = new FreshRead(s.read)
  const a = fresh.read()
  const b = fresh.read() // same synchronous run: nothing new can be known since a's read began
  assert.equal(s.started.length, 1)
  await new Promise((r) => setImmediate(r)) // I/O may have been processed since
  s.set(1)
  const c = fresh.read()
  assert.equal(s.started.length, 1, 'c waits for a read that starts after it called')
  s.started[0]!.resolve(0)
  assert.equal(await a, 0)
  assert.equal(await b, 0)
  await tick()
  s.started[1]!.resolve(1)
  assert.equal(await c, 1)
})

/** Runs `fn` in an asynchronous context of its own (what enterRequest marks stays inside). */
const isolated = <T>(fn: () => Promise<T>) =>
  new Promise<T>((resolve, reject) => setImmediate(() => fn().then(resolve, reject)))

test('inside a request, a read that started after the request arrived serves it', async () => {
  const s = source()
  const fresh = new FreshRead(s.read)
  await isolated(async () => {
    enterRequest(performance.now())
    // Another caller's read starts after this request arrived and completes.
    await tick()
    const first = fresh.read()
    s.started[0]!.resolve(0)
    await first
    await tick()
    s.set(1)
    // Later in the same request: the completed read still serves it (nothing it could know of
    // is newer than its arrival), no new read.
    assert.equal(await fresh.read(), 0)
    assert.equal(s.started.length, 1)
  })
  // Outside the request (another caller, now): that read started before, so a new one is made.
  const later = fresh.read()
  assert.equal(s.started.length, 2)
  s.started[1]!.resolve(1)
  assert.equal(await later, 1)
})

test('a request never gets a read that started before it arrived', async () => {
  const s = source()
  const fresh = new FreshRead(s.read)
  const early = fresh.read() // started before the request below arrives
  await tick()
  await isolated(async () => {
    s.set(1)
    enterRequest(performance.now())
    const mine = fresh.read()
    assert.equal(s.started.length, 1, 'waits for the next read')
    s.started[0]!.resolve(0)
    assert.equal(await early, 0)
    await tick()
    s.started[1]!.resolve(1)
    assert.equal(await mine, 1)
  })
})
