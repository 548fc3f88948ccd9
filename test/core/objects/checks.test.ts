import assert from 'node:assert/strict'
import { isAbsolute, join, relative, resolve } from 'node:path'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  checkKey,
  checkPrefix,
  InvalidObjectKeyError,
  isValidKey,
} from '../../../src/core/objects/index.ts'
import { badKeys } from './suite.ts'

const root = resolve('/srv/objects')
const segment = fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}$/)
const validKey = fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => s.join('/'))
/** Strings rich in the characters path traversal is made of. */
const hostile = fc.string({
  unit: fc.constantFrom('.', '/', '\\', '\0', 'a', '-', '%', ' ', '\n', '~', ':', 'é'),
  maxLength: 30,
})

describe('object key checks', () => {
  it('accepts keys of safe segments', () => {
    fc.assert(
      fc.property(validKey, (key) => {
        assert.equal(checkKey(key), key)
        assert.equal(checkPrefix(key), key)
        assert.equal(checkPrefix(`${key}/`), `${key}/`)
      }),
    )
  })

  it('rejects the known-bad keys', () => {
    for (const key of badKeys) assert.throws(() => checkKey(key), InvalidObjectKeyError)
  })

  it('never lets an accepted key escape the store root or name a hidden file (property)', () => {
    fc.assert(
      fc.property(fc.oneof(hostile, validKey, fc.string()), (key) => {
        if (!isValidKey(key)) {
          assert.throws(() => checkKey(key), InvalidObjectKeyError)
          return
        }
        const path = join(root, key)
        const rel = relative(root, path)
        assert.ok(rel && !rel.startsWith('..') && !isAbsolute(rel), key)
        assert.equal(rel, key, 'the key is its own normalized path')
        assert.ok(!key.includes('\0') && !key.startsWith('/'))
        assert.ok(key.split('/').every((s) => s && !s.startsWith('.')))
      }),
      { numRuns: 2000 },
    )
  })

  it('rejects any key containing a traversal segment (property)', () => {
    fc.assert(
      fc.property(
        fc.array(segment, { maxLength: 3 }),
        fc.constantFrom('..', '.', ''),
        fc.array(segment, { maxLength: 3 }),
        (before, bad, rest) => {
          const key = [...before, bad, ...rest].join('/')
          assert.throws(() => checkKey(key), InvalidObjectKeyError)
        },
      ),
    )
  })

  it('quotes rejected keys safely in the message', () => {
    assert.throws(
      () => checkKey('a\nforged log line'),
      (err: Error) => err instanceof InvalidObjectKeyError && !err.message.includes('\n'),
    )
  })
})
