import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import type { Change, DesiredObject } from '../types.ts'
import type { FileDriver } from './files.ts'
import { type Driver, diff } from './types.ts'

const run = promisify(execFile)

/** `sacctmgr -i add ...` lines of a rendered sacctmgr.txt, as argument vectors (no shell). */
export function commandsOf(content: string): string[][] {
  return content
    .split('\n')
    .filter((l) => l.startsWith('sacctmgr '))
    .map((l) => l.split(' ').slice(1))
}

/**
 * Slurm accounting through sacctmgr: accounts, QOS and users are created with `sacctmgr -i`
 * (adding an existing entity changes nothing, so re-applying is safe) and observed with
 * `sacctmgr -nP show`. slurm.conf partition lines and cgroup.conf cannot be pushed through the
 * accounting API: they stay artifacts for the cluster's configuration management.
 */
export class SlurmDriver implements Driver {
  readonly name = 'slurm' as const
  readonly #bin: string
  readonly #files: FileDriver

  constructor(sacctmgr: string, files: FileDriver) {
    this.#bin = sacctmgr
    this.#files = files
  }

  async #show(entity: 'account' | 'qos', name: string, cluster?: string) {
    const args = ['-nP', 'show', entity, name, 'format=name']
    if (cluster) args.push(`cluster=${cluster}`)
    const { stdout } = await run(this.#bin, args, { timeout: 30_000 })
    return stdout.split('\n').some((l) => l.trim() === name)
  }

  async observe(tenant: string, desired: readonly DesiredObject[]): Promise<Map<string, string>> {
    const out = await this.#files.observe(tenant)
    for (const o of desired) {
      if (!o.id.endsWith('/sacctmgr.txt')) continue
      const cluster = o.id.split('/')[0]!
      const present =
        (await this.#show('account', tenant, cluster)) && (await this.#show('qos', tenant))
      // Only both together match: the artifact (slurm.conf inputs) and the accounting entities.
      if (out.has(o.id) && !present) out.set(o.id, 'missing-in-slurmdbd')
      else if (!out.has(o.id) && present) out.set(o.id, 'artifact-missing')
    }
    return out
  }

  plan(desired: readonly DesiredObject[], observed: ReadonlyMap<string, string>): Change[] {
    return diff(this.name, desired, observed)
  }

  async apply(tenant: string, object: DesiredObject) {
    if (object.id.endsWith('/sacctmgr.txt'))
      for (const args of commandsOf(object.content)) {
        try {
          await run(this.#bin, args, { timeout: 30_000 })
        } catch (err) {
          // sacctmgr exits non-zero with "Nothing new added" when the entity already exists.
          if (
            !/nothing new added|already exists/i.test(
              String((err as { stdout?: string }).stdout ?? ''),
            )
          )
            throw new Error(`sacctmgr ${args.slice(0, 3).join(' ')} failed`)
        }
      }
    await this.#files.apply(tenant, object)
  }

  async delete(tenant: string, id: string) {
    if (id.endsWith('/sacctmgr.txt')) {
      const cluster = id.split('/')[0]!
      await run(this.#bin, ['-i', 'delete', 'account', tenant, `cluster=${cluster}`], {
        timeout: 30_000,
      }).catch(() => {})
      await run(this.#bin, ['-i', 'delete', 'qos', tenant], { timeout: 30_000 }).catch(() => {})
    }
    await this.#files.delete(tenant, id)
  }
}
