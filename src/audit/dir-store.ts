import { readdir, readFile, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import type { ObjectInfo, ObjectStore } from '../core/objects/types.ts'

/**
 * A read-only view of a directory object store (objects are files at their key's path), enough
 * for `dflare audit verify --store DIR` and restores to work on a copied backup without a server.
 */
export class DirectoryReader implements ObjectStore {
  readonly kind = 'directory' as const
  readonly location: string

  constructor(dir: string) {
    this.location = dir
  }

  #path(key: string) {
    if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(key) || key.split('/').includes('..'))
      throw new Error('invalid object key')
    return join(this.location, ...key.split('/'))
  }

  async put(): Promise<ObjectInfo> {
    throw new Error('the directory reader is read-only')
  }

  async delete(): Promise<void> {
    throw new Error('the directory reader is read-only')
  }

  async supportsRetention() {
    return false
  }

  async get(key: string) {
    return readFile(this.#path(key)).catch((err) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    })
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const s = await stat(this.#path(key)).catch(() => undefined)
    return s?.isFile() ? { key, size: s.size, lastModified: s.mtime } : undefined
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    const files = await readdir(this.location, { recursive: true, withFileTypes: true }).catch(
      () => [],
    )
    const keys = files
      .filter((f) => f.isFile())
      .map((f) => relative(this.location, join(f.parentPath, f.name)).split(sep).join('/'))
      .filter((k) => k.startsWith(prefix))
      .sort()
    for (const key of keys) {
      const info = await this.head(key)
      if (info) yield info
    }
  }
}
