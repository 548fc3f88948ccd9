import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import YAML from 'yaml'
import { specFor } from './helpers.ts'

const entry = new URL('./cli-entry.ts', import.meta.url).pathname

describe('dflare tenant / isolation CLI (local home, embedded database)', () => {
  let home: string
  let env: NodeJS.ProcessEnv
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [entry, ...args], {
      env,
      encoding: 'utf8',
      timeout: 60_000,
    })
    return { code: r.status, out: r.stdout, err: r.stderr }
  }
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'dflare-cli-'))
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('DFLARE_') && k !== 'DATABASE_URL'),
    )
    env = { ...clean, DFLARE_HOME: home, TEST_REALMS: 'acme' }
    await writeFile(join(home, 'acme.yaml'), YAML.stringify(specFor('acme', 1)))
  })
  after(() => rm(home, { recursive: true, force: true }))

  test('plan, apply, verify, destroy', async () => {
    const plan = cli('tenant', 'plan', 'acme', '--spec', join(home, 'acme.yaml'))
    assert.equal(plan.code, 0, plan.err)
    assert.match(plan.out, /^ {2}ethernet:$/m)
    assert.match(plan.out, /^ {4}\+ infiniband:partitions\.conf$/m)
    assert.match(plan.out, /Plan: \d+ to create, 0 to change, 0 to remove\./)

    const apply = cli('tenant', 'apply', 'acme', '--spec', join(home, 'acme.yaml'), '--json')
    assert.equal(apply.code, 0, apply.err)
    const res = JSON.parse(apply.out)
    assert.equal(res.executed, res.plan.changes.length)
    assert.ok(
      (await readFile(join(home, 'isolation/acme/firewall/ruleset.json'), 'utf8')).includes(
        'nftables',
      ),
    )

    assert.match(cli('tenant', 'plan', 'acme').out, /No changes/)
    const ok = cli('isolation', 'verify', '--json')
    assert.equal(ok.code, 0, ok.out + ok.err)
    assert.equal(JSON.parse(ok.out).ok, true)

    await writeFile(
      join(home, 'isolation/acme/slurm/hpc-a/cgroup.conf'),
      'CgroupPlugin=cgroup/v1\n',
    )
    const bad = cli('isolation', 'verify', '--json')
    assert.equal(bad.code, 1)
    assert.deepEqual(JSON.parse(bad.out).violations, [
      {
        kind: 'drift',
        layer: 'compute',
        tenant: 'acme',
        object: 'slurm:hpc-a/cgroup.conf',
        detail: 'changed',
      },
    ])

    const destroy = cli('tenant', 'destroy', 'acme')
    assert.equal(destroy.code, 0, destroy.err)
    assert.match(destroy.out, /Destroyed: \d+ step\(s\)/)
    assert.equal(cli('isolation', 'verify').code, 0)
  })

  test('usage and validation errors exit 2 and name the field', async () => {
    await writeFile(
      join(home, 'bad.yaml'),
      'apiVersion: dflare.dev/v1\nkind: TenantIsolation\nnetworks: 3\n',
    )
    const r = cli('tenant', 'apply', 'beta', '--spec', join(home, 'bad.yaml'))
    assert.equal(r.code, 2)
    assert.match(r.err, /networks: must be a list/)
    assert.equal(cli('tenant', 'apply', 'Bad_Name').code, 2)
  })
})
