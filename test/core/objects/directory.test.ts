import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ManualClock } from '../../../src/core/clock.ts'
import {
  DirectoryObjectStore,
  InvalidObjectKeyError,
  ObjectExistsError,
  ObjectLockedError,
} from '../../../src/core/objects/index.ts'
import { collect, objectStoreSuite } from './suite.ts'

const dirs: string[] = []
async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), 'dflare-objects-'))
  dirs.push(dir)
  return dir
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

/** Every file under `dir`, relative, including hidden ones. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort()
}

objectStoreSuite(
  'directory',
  async () => {
    const store = await new DirectoryObjectStore(await tempDir()).init()
    return { store, close: async () => {} }
  },
  { conditionalWrites: true, byteOrder: true, propertyRuns: 50 },
)

describe('DirectoryObjectStore', () => {
  it('creates its root owner-only and names it as its location', async () => {
    const root = join(await tempDir(), 'nested', 'objects')
    const store = await new DirectoryObjectStore(root).init()
    assert.equal(store.kind, 'directory')
    assert.equal(store.location, root)
    assert.equal((await stat(root)).mode & 0o777, 0o700)
    assert.equal(await store.supportsRetention(), true)
  })

  it('retains objects: read-only, no overwrite or delete until the date, then deletable', async () => {
    const root = await tempDir()
    const clock = new ManualClock(Date.UTC(2026, 0, 1))
    const store = await new DirectoryObjectStore(root, { clock }).init()
    const retainUntil = new Date(Date.UTC(2026, 0, 8))

    const info = await store.put('audit/checkpoint-1', 'signed note', { retainUntil })
    assert.deepEqual(info.retainUntil, retainUntil)
    assert.deepEqual((await store.head('audit/checkpoint-1'))?.retainUntil, retainUntil)
    assert.equal((await stat(join(root, 'audit/checkpoint-1'))).mode & 0o777, 0o400)

    await assert.rejects(store.put('audit/checkpoint-1', 'forged'), ObjectLockedError)
    await assert.rejects(
      store.put('audit/checkpoint-1', 'forged', { retainUntil: new Date(Date.UTC(2027, 0, 1)) }),
      ObjectLockedError,
    )
    await assert.rejects(
      store.put('audit/checkpoint-1', 'forged', { ifNoneMatch: true }),
      ObjectExistsError,
    )
    await assert.rejects(store.delete('audit/checkpoint-1'), ObjectLockedError)
    assert.equal((await store.get('audit/checkpoint-1'))?.toString(), 'signed note')

    clock.set(retainUntil.getTime() - 1)
    await assert.rejects(store.delete('audit/checkpoint-1'), ObjectLockedError)
    clock.set(retainUntil)
    await store.delete('audit/checkpoint-1')
    assert.equal(await store.head('audit/checkpoint-1'), undefined)
    // Nothing is left behind: no object, no record, no empty folders, no temp files.
    assert.deepEqual(await readdir(root), ['.meta'])
    assert.deepEqual(await readdir(join(root, '.meta')), [])
  })

  it('keeps retention records and temp files out of listings', async () => {
    const root = await tempDir()
    const store = await new DirectoryObjectStore(root).init()
    await store.put('a', 'x', {
      retainUntil: new Date(Date.now() + 3_600_000),
      contentType: 'text/plain',
    })
    await store.put('b/c', 'y')
    await assert.rejects(store.put('b/c', 'z', { ifNoneMatch: true }), ObjectExistsError)
    assert.deepEqual(
      (await collect(store.list())).map((i) => i.key),
      ['a', 'b/c'],
    )
    // The record lives in the hidden folder; a failed put leaves no temp file.
    assert.deepEqual(await filesUnder(root), ['.meta/a', '.meta/b/c', 'a', 'b/c'])
    const record = JSON.parse(await readFile(join(root, '.meta/a'), 'utf8'))
    assert.equal(record.contentType, 'text/plain')
    assert.ok(record.retainUntil)
  })

  it('treats symlinks and stray hidden files as non-objects', async () => {
    const root = await tempDir()
    const outside = join(await tempDir(), 'secret')
    await writeFile(outside, 'outside the store')
    const store = await new DirectoryObjectStore(root).init()
    await symlink(outside, join(root, 'link'))
    await writeFile(join(root, '.stray'), 'x')
    assert.equal(await store.get('link'), undefined)
    assert.equal(await store.head('link'), undefined)
    assert.deepEqual(await collect(store.list()), [])
  })

  it('refuses a key that collides with an object or a folder of keys, changing nothing', async () => {
    const root = await tempDir()
    const store = await new DirectoryObjectStore(root).init()
    await store.put('a', 'file')
    await store.put('b/c', 'nested')
    await assert.rejects(store.put('a/x', 'under a file'), InvalidObjectKeyError)
    await assert.rejects(store.put('b', 'over a folder'), InvalidObjectKeyError)
    assert.equal((await store.get('a'))?.toString(), 'file')
    assert.equal(await store.get('b'), undefined)
    assert.deepEqual(await filesUnder(root), ['.meta/a', '.meta/b/c', 'a', 'b/c'])
    // Deleting the last key under a folder frees the name.
    await store.delete('b/c')
    await store.put('b', 'now a file')
    assert.equal((await store.get('b'))?.toString(), 'now a file')
  })

  it('serializes concurrent conditional writes: exactly one wins', async () => {
    const store = await new DirectoryObjectStore(await tempDir()).init()
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => store.put('race', `writer ${i}`, { ifNoneMatch: true })),
    )
    const won = results.filter((r) => r.status === 'fulfilled')
    assert.equal(won.length, 1)
    for (const r of results)
      if (r.status === 'rejected') assert.ok(r.reason instanceof ObjectExistsError)
    assert.match((await store.get('race'))?.toString() ?? '', /^writer \d$/)
  })
})
