import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { main } from '../../src/cli/main.ts'
import { migrate, openDb } from '../../src/core/db/index.ts'
import { coreMigrations } from '../../src/core/migrations.ts'
import { x509 } from '../../src/pki/keys.ts'
import { pkiMigrations } from '../../src/pki/migrations.ts'
import { freshDatabase, testDatabaseUrl } from '../support/db.ts'
import { tempDir } from './helpers.ts'

let home: Awaited<ReturnType<typeof tempDir>>
let pg: Awaited<ReturnType<typeof freshDatabase>> | undefined
const saved = { ...process.env }

before(async () => {
  home = await tempDir()
  for (const k of Object.keys(process.env))
    if (k.startsWith('DFLARE_') && !k.startsWith('DFLARE_TEST_')) delete process.env[k]
  process.env.DFLARE_HOME = home.dir
  delete process.env.DATABASE_URL
  if (testDatabaseUrl) {
    pg = await freshDatabase()
    await migrate(pg.db, [coreMigrations, pkiMigrations])
    process.env.DATABASE_URL = pg.url
  } else {
    const db = await openDb({ kind: 'pglite', dataDir: join(home.dir, 'data') })
    await migrate(db, [coreMigrations, pkiMigrations])
    await db.close()
  }
})

after(async () => {
  process.env = saved
  await pg?.close()
  await home.cleanup()
})

/** Runs `dflare pki …` in-process; returns stdout and the exit code. */
async function dflare(...args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = ''
  let err = ''
  const write = process.stdout.write.bind(process.stdout)
  const errWrite = process.stderr.write.bind(process.stderr)
  process.stdout.write = ((s: string) => {
    out += s
    return true
  }) as typeof process.stdout.write
  process.stderr.write = ((s: string) => {
    err += s
    return true
  }) as typeof process.stderr.write
  process.exitCode = 0
  let code: number
  try {
    code = await main(['node', 'dflare', 'pki', ...args])
  } finally {
    process.stdout.write = write
    process.stderr.write = errWrite
  }
  process.exitCode = 0
  return { out, err, code }
}

test('dflare pki: ca, issue, list, revoke, crl, root export/remove/import', async () => {
  const ca = await dflare('ca', '--json')
  assert.equal(ca.code, 0, ca.out)
  const info = JSON.parse(ca.out)
  assert.equal(info.root.keyOnline, true)
  assert.equal(info.trustDomain, 'dflare.local')

  const out = join(home.dir, 'gateway')
  const issued = await dflare('issue', '--component', 'gateway', '--out', out, '--json')
  assert.equal(issued.code, 0, issued.out)
  const cert = JSON.parse(issued.out)
  assert.equal(cert.spiffeId, 'spiffe://dflare.local/component/gateway')
  assert.equal((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600)
  const leaf = new x509.X509Certificate(await readFile(join(out, 'cert.pem'), 'utf8'))
  assert.equal(leaf.serialNumber.replace(/^0+/, '').toLowerCase(), cert.serial)
  assert.equal(
    await readFile(join(out, 'ca.crt'), 'utf8'),
    await readFile(join(home.dir, 'pki', 'ca.crt'), 'utf8'),
  )

  const list = JSON.parse((await dflare('list', '--status', 'valid', '--json')).out)
  assert.deepEqual(
    list.items.map((c: { serial: string }) => c.serial),
    [cert.serial],
  )

  const revoked = await dflare('revoke', cert.serial, '--reason', 'keyCompromise', '--json')
  assert.equal(JSON.parse(revoked.out).status, 'revoked')
  assert.equal((await dflare('revoke', cert.serial)).code, 1, 'already revoked is a failure')
  assert.equal((await dflare('revoke', 'abcdef')).code, 1, 'unknown serial is a failure')
  assert.equal((await dflare('revoke', cert.serial, '--reason', 'because')).code, 2, 'usage error')

  const crl = JSON.parse((await dflare('crl', '--json')).out)
  assert.ok(new x509.X509Crl(crl.pem).findRevoked(cert.serial))

  assert.equal((await dflare('issue', '--out', out)).code, 2, 'needs --component or --identity')

  const pass = join(home.dir, 'pass')
  await writeFile(pass, 'a long enough passphrase\n', { mode: 0o600 })
  const exported = join(home.dir, 'root-key.pem')
  assert.equal((await dflare('root', 'remove')).code, 2, 'remove needs --yes')
  assert.equal(
    (await dflare('root', 'export', '--out', exported, '--passphrase-file', pass)).code,
    0,
  )
  assert.equal((await dflare('root', 'remove', '--yes')).code, 0)
  assert.equal(existsSync(join(home.dir, 'pki', 'root.key.enc')), false)
  assert.equal(JSON.parse((await dflare('ca', '--json')).out).root.keyOnline, false)
  // Issuance continues on the intermediate.
  assert.equal(
    (await dflare('issue', '--component', 'iam', '--out', join(home.dir, 'iam'))).code,
    0,
  )
  assert.equal(
    (await dflare('root', 'import', '--in', exported, '--passphrase-file', pass)).code,
    0,
  )
  assert.equal(JSON.parse((await dflare('ca', '--json')).out).root.keyOnline, true)
  const before = JSON.parse((await dflare('ca', '--json')).out).intermediate.serial
  const rotated = JSON.parse((await dflare('rotate-intermediate', '--json')).out)
  assert.notEqual(rotated.serial, before)
  assert.equal(JSON.parse((await dflare('ca', '--json')).out).intermediate.serial, rotated.serial)
})
