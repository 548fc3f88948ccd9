import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { allMigrations } from '../../src/server/migrations.ts'
import { DFLARE_BIN, runCli } from '../support/cli.ts'
import { httpsRequest } from '../support/https.ts'
import { copyPgliteTemplate } from '../support/pglite-template.ts'
import { tempHome } from '../support/server.ts'
import { until } from '../support/until.ts'

const REPO = fileURLToPath(new URL('../..', import.meta.url))

describe('dflare CLI', () => {
  it('prints its version (and --json) with exit 0', async () => {
    const r = await runCli(['version', '--json'])
    assert.equal(r.code, 0)
    assert.match(JSON.parse(r.stdout).version, /^\d+\.\d+\.\d+/)
    const h = await runCli(['--help'])
    assert.equal(h.code, 0)
    assert.match(h.stdout, /Usage: dflare/)
  })

  it('exits 2 on a usage error', async () => {
    assert.equal((await runCli(['no-such-command'])).code, 2)
    assert.equal((await runCli(['config', 'check', '--no-such-flag'])).code, 2)
  })

  const badSettings: [Record<string, string>, RegExp][] = [
    [{ DFLARE_LISTEN: 'http://127.0.0.1:8443' }, /DFLARE_LISTEN/],
    [{ DFLARE_TLS_MIN_VERSION: 'TLSv1.1' }, /DFLARE_TLS_MIN_VERSION.*TLSv1\.2, TLSv1\.3/],
    [{ DFLARE_BODY_LIMIT: 'lots' }, /DFLARE_BODY_LIMIT/],
    [{ DATABASE_URL: 'mysql://root@localhost/x' }, /DATABASE_URL/],
    [{ DFLARE_OBJECT_STORE: 's3://Bad_Bucket' }, /DFLARE_OBJECT_STORE/],
    [{ DFLARE_LISTN: 'https://127.0.0.1:1' }, /DFLARE_LISTN: unknown setting/],
  ]
  for (const [env, pattern] of badSettings) {
    it(`a bad setting stops start-up with exit 2 and one line: ${Object.keys(env)[0]}`, async () => {
      const r = await runCli(['up'], env)
      assert.equal(r.code, 2)
      const lines = r.stderr.trim().split('\n')
      assert.equal(lines.length, 1, r.stderr)
      assert.match(lines[0]!, pattern)
      assert.ok(!r.stderr.includes('at '), 'no stack trace')
    })
  }

  it('never prints a secret setting', async () => {
    const r = await runCli(['config', 'check', '--json'], {
      DATABASE_URL: 'postgres://u:s3cr3t-pw@db:5432/x',
    })
    assert.equal(r.code, 0)
    assert.ok(!r.stdout.includes('s3cr3t-pw'))
    assert.equal(JSON.parse(r.stdout).settings['database.url'].value, '(secret)')
    const bad = await runCli(['up'], { DATABASE_URL: 'mysql://u:s3cr3t-pw@db/x' })
    assert.ok(!bad.stderr.includes('s3cr3t-pw'))
  })

  it('reads dflare.yaml below the environment', async () => {
    const home = await tempHome()
    try {
      const file = join(home.path, 'dflare.yaml')
      const { writeFile } = await import('node:fs/promises')
      await writeFile(file, 'listen: https://127.0.0.1:9443\nlog:\n  level: warn\n')
      const r = await runCli(['config', 'check', '--json'], {
        DFLARE_CONFIG: file,
        DFLARE_LOG_LEVEL: 'debug',
      })
      const s = JSON.parse(r.stdout).settings
      assert.equal(s.listen.value, 'https://127.0.0.1:9443/')
      assert.equal(s.listen.source, 'file')
      assert.equal(s['log.level'].value, 'debug')
      assert.equal(s['log.level'].source, 'env')
      await writeFile(file, 'listen: https://127.0.0.1:9443\nlisten_typo: 1\n')
      const bad = await runCli(['config', 'check'], { DFLARE_CONFIG: file })
      assert.equal(bad.code, 2)
      assert.match(bad.stderr, /unknown setting "listen_typo"/)
    } finally {
      await home.remove()
    }
  })

  /** Starts the control plane with `command` in a fresh home; resolves once it is up. */
  async function startUp(command: string, args: string[]) {
    const home = await tempHome()
    await copyPgliteTemplate(join(home.path, 'data'), allMigrations)
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('DFLARE_') && k !== 'DATABASE_URL'),
    )
    const child = spawn(command, args, {
      cwd: REPO,
      env: { ...env, DFLARE_HOME: home.path, DFLARE_LISTEN: 'https://127.0.0.1:0' },
    })
    let out = ''
    const up = new Promise<Record<string, unknown>>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d
        for (const line of out.split('\n')) {
          if (!line.startsWith('{')) continue // npm's own lines
          const entry = JSON.parse(line)
          if (entry.msg === 'dflare is up') resolve(entry)
        }
      })
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)))
    })
    return { home, child, up: await up, out: () => out }
  }

  it('`up` serves HTTPS, then on SIGTERM finishes in-flight requests and exits 0', async () => {
    const { home, child, up, out } = await startUp(process.execPath, [DFLARE_BIN, 'up'])
    try {
      const ca = await readFile(join(home.path, 'pki', 'ca.crt'), 'utf8')
      const url = new URL(String(up.url))
      const r = await httpsRequest(new URL('/readyz', url), { ca })
      assert.equal(r.status, 200)
      assert.ok(!out().includes('BEGIN'), 'no key material in the log')
      const exit = new Promise<number | null>((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      assert.equal(await exit, 0)
      assert.match(out(), /"msg":"stopped"/)
    } finally {
      child.kill('SIGKILL')
      await home.remove()
    }
  })

  it('`npm start` passes SIGTERM on to the control plane: it stops, nothing is left running', async () => {
    const { home, child, up, out } = await startUp('npm', ['start'])
    try {
      const exit = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM') // as a container runtime or a process manager stops npm
      await exit
      const pid = Number(up.pid)
      const gone = await until(async () => {
        try {
          process.kill(pid, 0)
          return false
        } catch {
          return true
        }
      }, 10_000)
      assert.ok(gone, 'the node process is gone')
      assert.match(out(), /"msg":"stopped"/)
    } finally {
      child.kill('SIGKILL')
      try {
        process.kill(Number(up.pid), 'SIGKILL')
      } catch {
        // already gone
      }
      await home.remove()
    }
  })
})
