import { createHash, randomBytes } from 'node:crypto'
import { constants, type Stats } from 'node:fs'
import {
  chmod,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rmdir,
  unlink,
} from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { type Clock, systemClock } from '../clock.ts'
import { checkKey, checkPrefix, checkRetainUntil } from './checks.ts'
import {
  InvalidObjectKeyError,
  ObjectExistsError,
  type ObjectInfo,
  ObjectLockedError,
  type ObjectStore,
  type PutOptions,
} from './types.ts'

/** Hidden folder of per-object records (content type, etag, retention); a mirror of the key tree. */
const META_DIR = '.meta'
const FILE_MODE = 0o600
/** Retained objects and their records are read-only (owner-only: backups may hold secrets). */
const RETAINED_MODE = 0o400

interface ObjectRecord {
  contentType?: string
  etag: string
  retainUntil?: string
}

/**
 * The embedded object store: one file per object under `root`, written atomically (temp file,
 * fsync, rename, directory fsync). Retention is enforced by this process: retained files are
 * read-only and their record refuses overwrite and delete until the date. Mutations are
 * serialized within the process; the store assumes it is the only writer of its directory.
 */
export class DirectoryObjectStore implements ObjectStore {
  readonly kind = 'directory' as const
  readonly location: string
  readonly #root: string
  readonly #clock: Clock
  #queue: Promise<unknown> = Promise.resolve()

  constructor(root: string, options: { clock?: Clock } = {}) {
    this.#root = resolve(root)
    this.location = this.#root
    this.#clock = options.clock ?? systemClock
  }

  /** Creates the root directory (0700) if needed. */
  async init(): Promise<this> {
    await mkdir(this.#root, { recursive: true, mode: 0o700 })
    return this
  }

  async supportsRetention(): Promise<boolean> {
    return true
  }

  async put(key: string, body: Uint8Array | string, options: PutOptions = {}): Promise<ObjectInfo> {
    checkKey(key)
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
    checkRetainUntil(options.retainUntil, this.#clock)
    return this.#serialize(async () => {
      const file = this.#objectPath(key)
      const current = await fileStats(file)
      if (current && options.ifNoneMatch)
        throw new ObjectExistsError(`Object ${key} already exists`)
      if (current) await this.#refuseIfRetained(key)

      const record: ObjectRecord = {
        etag: createHash('md5').update(bytes).digest('hex'),
        ...(options.contentType ? { contentType: options.contentType } : {}),
        ...(options.retainUntil ? { retainUntil: options.retainUntil.toISOString() } : {}),
      }
      const mode = options.retainUntil ? RETAINED_MODE : FILE_MODE
      try {
        // The record goes first: a crash in between may leave an older object protected, never
        // a retained object without its protection.
        await writeAtomic(this.#metaPath(key), JSON.stringify(record), mode, 'replace')
        await writeAtomic(file, bytes, mode, options.ifNoneMatch ? 'create' : 'replace')
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EEXIST' && options.ifNoneMatch)
          throw new ObjectExistsError(`Object ${key} already exists`)
        // A file cannot also be a folder: `a` and `a/b` cannot both exist in this store.
        if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR')
          throw new InvalidObjectKeyError(
            `Object key ${key} collides with an existing object or key prefix in ${this.location}`,
          )
        throw err
      }
      return (await this.#info(key))!
    })
  }

  async get(key: string): Promise<Buffer | undefined> {
    checkKey(key)
    try {
      return await readFile(this.#objectPath(key), {
        flag: constants.O_RDONLY | constants.O_NOFOLLOW,
      })
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key)
    return this.#info(key)
  }

  async *list(prefix = ''): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix)
    // Walk only the deepest directory the prefix names; filter the rest by string prefix.
    const base = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : ''
    const found: { key: string; stats: Stats }[] = []
    await walk(join(this.#root, base), base, async (key, stats) => {
      if (key.startsWith(prefix)) found.push({ key, stats })
    })
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    for (const { key, stats } of found) yield { key, size: stats.size, lastModified: stats.mtime }
  }

  async delete(key: string): Promise<void> {
    checkKey(key)
    return this.#serialize(async () => {
      const file = this.#objectPath(key)
      if (!(await fileStats(file))) return
      await this.#refuseIfRetained(key)
      await unlink(file)
      await unlink(this.#metaPath(key)).catch(ignoreMissing)
      await fsyncDir(dirname(file))
      await removeEmptyParents(dirname(file), this.#root)
      await removeEmptyParents(dirname(this.#metaPath(key)), join(this.#root, META_DIR))
    })
  }

  #objectPath(key: string) {
    return join(this.#root, key)
  }

  #metaPath(key: string) {
    return join(this.#root, META_DIR, key)
  }

  async #record(key: string): Promise<ObjectRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.#metaPath(key), 'utf8')) as ObjectRecord
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  }

  async #refuseIfRetained(key: string) {
    const until = (await this.#record(key))?.retainUntil
    if (until && new Date(until) > this.#clock.now())
      throw new ObjectLockedError(`Object ${key} is retained until ${until}`)
  }

  async #info(key: string): Promise<ObjectInfo | undefined> {
    const stats = await fileStats(this.#objectPath(key))
    if (!stats) return undefined
    const record = await this.#record(key)
    return {
      key,
      size: stats.size,
      lastModified: stats.mtime,
      ...(record?.contentType ? { contentType: record.contentType } : {}),
      ...(record?.etag ? { etag: record.etag } : {}),
      ...(record?.retainUntil ? { retainUntil: new Date(record.retainUntil) } : {}),
    }
  }

  #serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn)
    this.#queue = run.catch(() => {})
    return run
  }
}

/**
 * Writes `data` to a temp file next to `file`, fsyncs it, then moves it into place: `replace`
 * renames over any existing file; `create` links and fails with EEXIST when the name is taken.
 */
async function writeAtomic(
  file: string,
  data: Uint8Array | string,
  mode: number,
  how: 'replace' | 'create',
) {
  const dir = dirname(file)
  await ensureDir(dir)
  const tmp = join(dir, `.tmp-${randomBytes(8).toString('hex')}`)
  const handle = await open(tmp, 'wx', FILE_MODE)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await chmod(tmp, mode)
    if (how === 'replace') await rename(tmp, file)
    else {
      await link(tmp, file)
      await unlink(tmp)
    }
  } catch (err) {
    await unlink(tmp).catch(ignoreMissing)
    throw err
  }
  await fsyncDir(dir)
}

/** mkdir -p, then fsyncs the parents of every directory it created so they survive a crash. */
async function ensureDir(dir: string) {
  const first = await mkdir(dir, { recursive: true, mode: 0o700 })
  if (!first) return
  for (let d = dir; ; d = dirname(d)) {
    await fsyncDir(dirname(d))
    if (d === first || d === dirname(d)) return
  }
}

async function fsyncDir(dir: string) {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Regular files only: a symlink or directory at a key's path is not an object. */
async function fileStats(file: string): Promise<Stats | undefined> {
  try {
    const stats = await lstat(file)
    return stats.isFile() ? stats : undefined
  } catch (err) {
    if (isMissing(err)) return undefined
    throw err
  }
}

/** Calls `visit` for every regular file under `dir`, skipping dot-names and symlinks. */
async function walk(
  dir: string,
  keyBase: string,
  visit: (key: string, stats: Stats) => Promise<void>,
) {
  let entries: import('node:fs').Dirent[]
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if (isMissing(err)) return
    throw err
  }
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue
    const key = keyBase ? `${keyBase}/${entry.name}` : entry.name
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await walk(path, key, visit)
    else if (entry.isFile()) {
      const stats = await fileStats(path)
      if (stats) await visit(key, stats)
    }
  }
}

/** Removes now-empty directories from `dir` up to (not including) `stop`. */
async function removeEmptyParents(dir: string, stop: string) {
  for (let d = dir; d.startsWith(`${stop}/`); d = dirname(d)) {
    try {
      await rmdir(d)
    } catch {
      return
    }
  }
}

function isMissing(err: unknown) {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ELOOP'
}

function ignoreMissing(err: unknown) {
  if (!isMissing(err)) throw err
}
