import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { type Change, type DesiredObject, type DriverName, sha256 } from '../types.ts'
import { type Driver, diff } from './types.ts'

/**
 * The embedded default of every layer: artifacts live in ARTIFACTS/<tenant>/<driver>/<id>, where
 * an engineer (or a config management tool) picks them up, and are observed from there.
 */
export class FileDriver implements Driver {
  readonly name: DriverName
  readonly #root: string

  constructor(name: DriverName, artifactsDir: string) {
    this.name = name
    this.#root = resolve(artifactsDir)
  }

  dir(tenant: string) {
    return join(this.#root, tenant, this.name)
  }

  /** Resolves an object id inside the tenant's folder; ids come from renderers, but never trust a path. */
  path(tenant: string, id: string) {
    const base = this.dir(tenant)
    const p = resolve(base, id)
    if (!p.startsWith(base + sep) || /(^|\/)\.\.?(\/|$)/.test(id))
      throw new Error(`object id escapes the tenant folder: ${JSON.stringify(id)}`)
    return p
  }

  async observe(tenant: string): Promise<Map<string, string>> {
    const base = this.dir(tenant)
    const out = new Map<string, string>()
    let entries: string[]
    try {
      entries = await readdir(base, { recursive: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out
      throw err
    }
    for (const e of entries.sort()) {
      if (e.endsWith('.tmp')) continue
      const p = join(base, e)
      try {
        out.set(relative(base, p).split(sep).join('/'), sha256(await readFile(p, 'utf8')))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EISDIR') throw err
      }
    }
    return out
  }

  plan(desired: readonly DesiredObject[], observed: ReadonlyMap<string, string>): Change[] {
    return diff(this.name, desired, observed)
  }

  async apply(tenant: string, object: DesiredObject) {
    const p = this.path(tenant, object.id)
    await mkdir(dirname(p), { recursive: true, mode: 0o750 })
    // Write then rename, so a crash never leaves a half-written artifact behind.
    const tmp = `${p}.${process.pid}.tmp`
    await writeFile(tmp, object.content, { mode: 0o640 })
    await rename(tmp, p)
  }

  async delete(tenant: string, id: string) {
    await rm(this.path(tenant, id), { force: true })
  }
}
