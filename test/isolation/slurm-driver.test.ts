import assert from 'node:assert/strict'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { FileDriver } from '../../src/isolation/drivers/files.ts'
import { SlurmDriver } from '../../src/isolation/drivers/slurm.ts'
import type { DesiredObject } from '../../src/isolation/types.ts'

/** A stand-in sacctmgr: logs its argv and keeps accounts/QOS in a state file. */
const FAKE = `#!/bin/sh
dir=$(dirname "$0")
echo "$*" >> "$dir/calls.log"
touch "$dir/state"
case "$1 $2 $3" in
  "-i add account"|"-i add qos")
    if grep -qx "$3 $4" "$dir/state"; then echo " Nothing new added."; exit 1; fi
    echo "$3 $4" >> "$dir/state" ;;
  "-i delete account"|"-i delete qos")
    grep -vx "$3 $4" "$dir/state" > "$dir/state.new"; mv "$dir/state.new" "$dir/state" ;;
  "-nP show account"|"-nP show qos")
    grep -qx "$3 $4" "$dir/state" && echo "$4" ;;
esac
exit 0
`

describe('Slurm driver (sacctmgr)', () => {
  let dir: string
  let driver: SlurmDriver
  const sacct: DesiredObject = {
    driver: 'slurm',
    id: 'hpc-a/sacctmgr.txt',
    content:
      'sacctmgr -i add qos acme GrpTRES=gres/gpu=8 Flags=DenyOnLimit\nsacctmgr -i add account acme Cluster=hpc-a QosLevel=acme\n',
  }
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dflare-slurm-'))
    await writeFile(join(dir, 'sacctmgr'), FAKE)
    await chmod(join(dir, 'sacctmgr'), 0o755)
    driver = new SlurmDriver(join(dir, 'sacctmgr'), new FileDriver('slurm', join(dir, 'artifacts')))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  test('applies without a shell, re-applies harmlessly, observes slurmdbd, deletes', async () => {
    assert.deepEqual(
      driver.plan([sacct], await driver.observe('acme', [sacct])).map((c) => c.action),
      ['create'],
    )
    await driver.apply('acme', sacct)
    await driver.apply('acme', sacct) // "Nothing new added" is success
    const calls = (await readFile(join(dir, 'calls.log'), 'utf8')).trim().split('\n')
    assert.equal(
      calls.find((c) => c.startsWith('-i ')),
      '-i add qos acme GrpTRES=gres/gpu=8 Flags=DenyOnLimit',
    )
    assert.deepEqual(driver.plan([sacct], await driver.observe('acme', [sacct])), [])
    // Someone deletes the account in slurmdbd: drift, even though the artifact is in place.
    await writeFile(join(dir, 'state'), 'qos acme\n')
    assert.deepEqual(
      driver.plan([sacct], await driver.observe('acme', [sacct])).map((c) => c.action),
      ['change'],
    )
    await driver.delete('acme', sacct.id)
    assert.equal((await readFile(join(dir, 'state'), 'utf8')).trim(), '')
    assert.deepEqual(await driver.observe('acme', []), new Map())
  })
})
