import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { AUDIT_CALLERS } from '../../src/audit/internal.ts'
import { AUTHZ_CALLERS } from '../../src/authz/internal.ts'
import { DataDirLocked, lockDataDir } from '../../src/core/db/index.ts'
import { IAM_CALLERS } from '../../src/iam/internal.ts'
import { openCa } from '../../src/pki/ca-store.ts'
import { Kek } from '../../src/pki/kek.ts'
import { generateEcKeyPair, privateKeyToPem } from '../../src/pki/keys.ts'
import { allMigrations } from '../../src/server/migrations.ts'
import { COMPONENTS, NEEDS, parseComponents, SERVED } from '../../src/server/topology.ts'
import { runCli } from '../support/cli.ts'
import { copyPgliteTemplate } from '../support/pglite-template.ts'
import { startDflare } from '../support/serve.ts'
import { tempHome } from '../support/server.ts'

/** `dflare serve` settings and topology: every mistake stops start-up with one line, exit 2. */
const PG = 'postgres://dflare@127.0.0.1:1/never-contacted'

async function exits2(args: string[], env: Record<string, string>, pattern: RegExp) {
  const r = await runCli(args, env)
  assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
  const lines = r.stderr.trim().split('\n')
  assert.equal(lines.length, 1, r.stderr)
  assert.match(lines[0]!, pattern)
  assert.ok(!r.stderr.includes('    at '), 'no stack trace')
}

describe('dflare serve: configuration', () => {
  it('parses the component list strictly', () => {
    assert.deepEqual(parseComponents('all'), COMPONENTS)
    assert.deepEqual(parseComponents(' gateway, authz '), ['authz', 'gateway'])
    assert.deepEqual(parseComponents(['iam', 'pki']), ['pki', 'iam'])
    for (const bad of ['', 'gateway,nope', 'all,iam', 'GATEWAY', 'api'])
      assert.throws(() => parseComponents(bad), bad)
  })

  it('allow-lists admit exactly the components that call them', () => {
    const callers = { audit: AUDIT_CALLERS, authz: AUTHZ_CALLERS, iam: IAM_CALLERS }
    for (const served of SERVED) {
      const needing = COMPONENTS.filter((c) => NEEDS[c].includes(served))
      assert.deepEqual([...callers[served]].sort(), [...needing].sort(), served)
    }
  })

  it('refuses unknown components, from the flag or the environment', async () => {
    const home = await tempHome()
    try {
      await exits2(
        ['serve', '--components', 'iam,bogus'],
        { DFLARE_HOME: home.path },
        /^dflare: --components "iam,bogus" names unknown component "bogus"; allowed: all, or/,
      )
      await exits2(
        ['serve'],
        { DFLARE_HOME: home.path, DFLARE_COMPONENTS: 'gateway,authz,api' },
        /DFLARE_COMPONENTS \(components\): value "gateway,authz,api" names unknown component "api"/,
      )
      await exits2(
        ['up'],
        { DFLARE_HOME: home.path, DFLARE_COMPONENTS: 'authz' },
        /DFLARE_COMPONENTS \(components\): dflare up runs every component; use dflare serve/,
      )
    } finally {
      await home.remove()
    }
  })

  it('a subset needs PostgreSQL, the peers it depends on and its certificates', async () => {
    const home = await tempHome()
    try {
      const env = { DFLARE_HOME: home.path }
      await exits2(
        ['serve', '--components', 'gateway'],
        env,
        /DATABASE_URL \(database\.url\): required when a process runs a subset.*shares one PostgreSQL/,
      )
      const pg = { ...env, DATABASE_URL: PG }
      await exits2(
        ['serve', '--components', 'gateway'],
        pg,
        /DFLARE_PEER_AUDIT \(peers\.audit\): required because gateway runs in this process and audit does not/,
      )
      const peers = {
        ...pg,
        DFLARE_PEER_AUDIT: 'https://10.0.0.1:8444',
        DFLARE_PEER_AUTHZ: 'https://10.0.0.2:8444',
        DFLARE_PEER_IAM: 'https://10.0.0.1:8444',
      }
      await exits2(
        ['serve', '--components', 'gateway'],
        peers,
        /DFLARE_PEER_PKI \(peers\.pki\): required because pki does not run in this process/,
      )
      await exits2(
        ['serve', '--components', 'gateway'],
        { ...peers, DFLARE_PEER_AUTHZ: 'http://10.0.0.2:8444' },
        /DFLARE_PEER_AUTHZ \(peers\.authz\)/,
      )
      const full = { ...peers, DFLARE_PEER_PKI: 'https://10.0.0.1:8443' }
      const dir = join(home.path, 'identity', 'gateway')
      await exits2(
        ['serve', '--components', 'gateway'],
        full,
        new RegExp(
          `DFLARE_IDENTITY_DIR \\(identity\\.dir\\): no cert\\.pem for component gateway in ${dir}; on the PKI host run: dflare pki issue --component gateway`,
        ),
      )
      // Another component's certificate in the gateway's directory is refused.
      const { ca } = await openCa({
        dir: join(home.path, 'ca'),
        kek: new Kek(Buffer.alloc(32, 3), 'env'),
      })
      const keys = await generateEcKeyPair()
      const now = Date.now()
      const authz = await ca.issue(
        { kind: 'service', spiffeId: 'spiffe://dflare.local/component/authz' },
        keys.publicKey,
        { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) },
      )
      await mkdir(dir, { recursive: true })
      await writeFile(join(dir, 'cert.pem'), authz.chainPem)
      await writeFile(join(dir, 'key.pem'), await privateKeyToPem(keys.privateKey))
      await writeFile(join(dir, 'ca.crt'), ca.rootPem)
      await exits2(
        ['serve', '--components', 'gateway'],
        full,
        /is spiffe:\/\/dflare\.local\/component\/authz, expected spiffe:\/\/dflare\.local\/component\/gateway/,
      )
      const expired = await ca.issue(
        { kind: 'service', spiffeId: 'spiffe://dflare.local/component/gateway' },
        keys.publicKey,
        { notBefore: new Date(now - 7_200_000), notAfter: new Date(now - 3_600_000) },
      )
      await writeFile(join(dir, 'cert.pem'), expired.chainPem)
      await exits2(
        ['serve', '--components', 'gateway'],
        full,
        /the certificate of gateway in .* expired at .* cannot renew itself/,
      )
    } finally {
      await home.remove()
    }
  })

  it('the embedded database belongs to one process: a second one exits 2, a stale lock is taken over', async () => {
    const home = await tempHome()
    try {
      const data = join(home.path, 'data')
      await copyPgliteTemplate(data, allMigrations)
      const env = { DFLARE_HOME: home.path, DFLARE_LISTEN: 'https://127.0.0.1:0' }
      const first = await startDflare(['up'], env)
      try {
        await exits2(
          ['serve'],
          env,
          new RegExp(
            `DFLARE_HOME \\(home\\): the embedded database ${data} is in use by process ${first.pid}`,
          ),
        )
      } finally {
        assert.equal(await first.stop(), 0)
      }
      assert.ok(!existsSync(`${data}.lock`), 'released on shutdown')

      // A crashed owner's lock (its process is gone) does not block the next start.
      await writeFile(`${data}.lock`, '2147483646\n')
      const release = lockDataDir(data)
      assert.throws(() => lockDataDir(data), DataDirLocked, 'held by this process now')
      release()
      assert.ok(!existsSync(`${data}.lock`))
    } finally {
      await home.remove()
    }
  })
})
