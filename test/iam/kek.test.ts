import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createSealer, loadKek } from '../../src/iam/kek.ts'

test('identity key-encryption key: setting, file, generated default', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'dflare-iam-kek-'))
  t.after(() => rm(home, { recursive: true, force: true }))

  const generated = await loadKek(home)
  assert.equal((await stat(join(home, 'iam', 'kek'))).mode & 0o777, 0o600)
  assert.deepEqual(await loadKek(home), generated, 'later starts reuse the generated key')

  const key = randomBytes(32)
  const file = join(home, 'mounted-kek')
  await writeFile(file, `${key.toString('base64')}\n`, { mode: 0o600 })
  assert.deepEqual(await loadKek(home, { file }), key)
  const inline = randomBytes(32)
  assert.deepEqual(
    await loadKek(home, { key: inline.toString('base64'), file }),
    inline,
    'the setting wins over the file',
  )

  // A secret sealed under one key does not open under another.
  const sealed = createSealer(key).seal('client secret', 'row-1')
  assert.throws(() => createSealer(generated).open(sealed, 'row-1'))
})

test('identity key-encryption key: unsafe or missing files are refused', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'dflare-iam-kek-'))
  t.after(() => rm(home, { recursive: true, force: true }))
  const open = join(home, 'world-readable')
  await writeFile(open, randomBytes(32).toString('base64'), { mode: 0o644 })
  await assert.rejects(loadKek(home, { file: open }), /group or others/)
  const short = join(home, 'short')
  await writeFile(short, randomBytes(16).toString('base64'), { mode: 0o600 })
  await assert.rejects(loadKek(home, { file: short }), /32-byte/)
  await assert.rejects(
    loadKek(home, { file: join(home, 'nope') }),
    /DFLARE_IAM_KEK_FILE: .* does not exist/,
  )
})
