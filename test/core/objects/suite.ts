/**
 * The behaviour every ObjectStore shares, run against each backend by its own test file.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, describe, it } from 'node:test'
import fc from 'fast-check'
import {
  InvalidObjectKeyError,
  ObjectExistsError,
  type ObjectInfo,
  type ObjectStore,
} from '../../../src/core/objects/index.ts'

export interface SuiteOptions {
  /** The backend enforces `ifNoneMatch` (s3rver ignores `If-None-Match` on PUT). */
  conditionalWrites: boolean
  /**
   * The backend orders `b-` before `b/1` (byte order, as S3 does). s3rver walks its directory
   * tree instead and lists `b/…` first.
   */
  byteOrder: boolean
  /** fast-check runs for the byte round-trip property. */
  propertyRuns: number
}

async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = []
  for await (const info of it) out.push(info)
  return out
}

export const badKeys = [
  '',
  '/abs',
  'a//b',
  'a/',
  '..',
  'a/../b',
  '../escape',
  './a',
  'a/./b',
  '.hidden',
  'a/.meta',
  'nul\0byte',
  'back\\slash',
  'sp ace',
  'new\nline',
  'ünï',
  'a'.repeat(1025),
]

export function objectStoreSuite(
  name: string,
  open: () => Promise<{ store: ObjectStore; close(): Promise<void> }>,
  options: SuiteOptions,
) {
  describe(`${name}: ObjectStore behaviour`, () => {
    let store: ObjectStore
    let close: (() => Promise<void>) | undefined
    const fresh = async () => {
      if (close) await close()
      ;({ store, close } = await open())
      return store
    }
    after(() => close?.())

    it('round-trips strings and bytes with metadata', async () => {
      const s = await fresh()
      const info = await s.put('backups/2026/a.json', '{"x":1}', {
        contentType: 'application/json',
      })
      assert.equal(info.key, 'backups/2026/a.json')
      assert.equal(info.size, 7)
      assert.deepEqual(await s.get('backups/2026/a.json'), Buffer.from('{"x":1}'))
      const head = await s.head('backups/2026/a.json')
      assert.ok(head)
      assert.equal(head.size, 7)
      assert.equal(head.contentType, 'application/json')
      assert.ok(head.lastModified instanceof Date && !Number.isNaN(head.lastModified.getTime()))
      assert.equal(head.etag, createHash('md5').update('{"x":1}').digest('hex'))
      const bytes = new Uint8Array([0, 255, 1, 254, 10, 13])
      await s.put('bin', bytes)
      assert.deepEqual(await s.get('bin'), Buffer.from(bytes))
      await s.put('empty', new Uint8Array())
      assert.deepEqual(await s.get('empty'), Buffer.alloc(0))
      assert.equal((await s.head('empty'))?.size, 0)
    })

    it('reports missing objects as undefined and deletes idempotently', async () => {
      const s = await fresh()
      assert.equal(await s.get('nope'), undefined)
      assert.equal(await s.head('nope'), undefined)
      assert.equal(await s.get('no/such/dir'), undefined)
      await s.delete('nope')
      await s.put('x', 'one')
      await s.delete('x')
      assert.equal(await s.get('x'), undefined)
      assert.deepEqual(await collect(s.list()), [])
    })

    it('overwrites without ifNoneMatch', async () => {
      const s = await fresh()
      await s.put('k', 'first', { contentType: 'text/plain' })
      await s.put('k', 'second!')
      assert.equal((await s.get('k'))?.toString(), 'second!')
      assert.equal((await s.head('k'))?.size, 7)
    })

    it('lists in key order, filtered by prefix', async () => {
      const s = await fresh()
      const keys = ['b/2', 'a', 'b/10', 'b/1/x', 'ba', 'A', 'c/d/e/f']
      if (options.byteOrder) keys.push('b-')
      for (const k of keys) await s.put(k, k)
      const all = (await collect(s.list())).map((i) => i.key)
      assert.deepEqual(all, [...keys].sort())
      assert.deepEqual(
        (await collect(s.list('b/'))).map((i) => i.key),
        ['b/1/x', 'b/10', 'b/2'],
      )
      assert.deepEqual(
        (await collect(s.list('b/1'))).map((i) => i.key),
        ['b/1/x', 'b/10'],
      )
      assert.deepEqual(
        (await collect(s.list('b'))).map((i) => i.key),
        [...(options.byteOrder ? ['b-'] : []), 'b/1/x', 'b/10', 'b/2', 'ba'],
      )
      assert.deepEqual(await collect(s.list('zzz/')), [])
      const one = (await collect(s.list('c/'))).at(0)
      assert.equal(one?.size, 7)
      assert.ok(one?.lastModified instanceof Date)
    })

    it('rejects unsafe keys on every operation', async () => {
      const s = await fresh()
      for (const key of badKeys) {
        await assert.rejects(s.put(key, 'x'), InvalidObjectKeyError, JSON.stringify(key))
        await assert.rejects(s.get(key), InvalidObjectKeyError)
        await assert.rejects(s.head(key), InvalidObjectKeyError)
        await assert.rejects(s.delete(key), InvalidObjectKeyError)
      }
      for (const prefix of ['/', '../', 'a/../', '.meta/', 'a//', '\0']) {
        await assert.rejects(collect(s.list(prefix)), InvalidObjectKeyError, prefix)
      }
      assert.deepEqual(await collect(s.list()), [])
    })

    it('refuses to overwrite with ifNoneMatch', { skip: !options.conditionalWrites }, async () => {
      const s = await fresh()
      await s.put('once', 'original', { ifNoneMatch: true })
      await assert.rejects(s.put('once', 'replaced', { ifNoneMatch: true }), ObjectExistsError)
      assert.equal((await s.get('once'))?.toString(), 'original')
      assert.deepEqual(
        (await collect(s.list())).map((i) => i.key),
        ['once'],
      )
    })

    it('refuses a retention date in the past', async () => {
      const s = await fresh()
      await assert.rejects(s.put('r', 'x', { retainUntil: new Date(0) }), RangeError)
      await assert.rejects(s.put('r', 'x', { retainUntil: new Date(Number.NaN) }), TypeError)
      assert.equal(await s.head('r'), undefined)
    })

    it('round-trips arbitrary bytes under arbitrary valid keys (property)', async () => {
      const s = await fresh()
      const segment = fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,11}$/)
      const key = fc.array(segment, { minLength: 1, maxLength: 4 }).map((p) => p.join('/'))
      await fc.assert(
        fc.asyncProperty(key, fc.uint8Array({ maxLength: 4096 }), async (k, bytes) => {
          // Keys must not collide with a directory of an earlier run on the directory store.
          const unique = `p/${Math.random().toString(36).slice(2)}/${k}`
          await s.put(unique, bytes)
          assert.deepEqual(await s.get(unique), Buffer.from(bytes))
          assert.equal((await s.head(unique))?.size, bytes.byteLength)
          await s.delete(unique)
          assert.equal(await s.head(unique), undefined)
        }),
        { numRuns: options.propertyRuns },
      )
    })
  })
}

export { collect }
