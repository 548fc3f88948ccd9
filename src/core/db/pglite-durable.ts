import fs from 'node:fs'
import { PGlite, type PGliteOptions } from '@electric-sql/pglite'
import { NodeFS } from '@electric-sql/pglite/nodefs'
import { WalSync } from './pglite-wal-sync.ts'

/**
 * PGlite's data directory on the host, made durable. PGlite starts PostgreSQL with fsync off
 * (`-F`), and Emscripten's NODEFS, which maps the data directory onto the host's files, has no
 * fsync at all: a commit reached the operating system's page cache, not the disk. It survived a
 * crash of the process, not one of the machine. Here PostgreSQL runs with fsync on and
 * `wal_sync_method=fsync`, and NODEFS's fsync is the host's: a commit is acknowledged once its WAL
 * is on disk, as on a PostgreSQL server (checkpoints sync the data files, and directories are
 * synced when files are created in them). WAL files are synced off the event loop, by WalSync
 * (pglite-wal-sync.ts), which also keeps the write-ahead order; everything else synchronously.
 *
 * A failed fsync stops the process at once, as PostgreSQL's PANIC stops the server: the data may
 * be gone from the page cache, so nothing may be acknowledged after it (PGlite, told of the error,
 * would hang on PostgreSQL's PANIC instead). The next start recovers from the WAL on disk.
 */

type Op = (...args: never[]) => unknown

/** The parts of Emscripten's module this needs (PGlite does not type them). */
export interface EmscriptenFs {
  NODEFS: {
    stream_ops: {
      fsync?: (stream: NodefsStream) => number
      write?: Op
      setattr?: Op
      close?: (stream: NodefsStream) => unknown
    }
    node_ops: { setattr?: Op; rename?: Op; unlink?: Op; rmdir?: Op }
    realPath(node: unknown): string
  }
}

interface NodefsStream {
  /** The host's file descriptor; NODEFS opens none for a directory. */
  nfd?: number
  node: unknown
}

function fatal(err: unknown): never {
  const code = (err as NodeJS.ErrnoException)?.code ?? 'unknown error'
  process.stderr.write(
    `dflare: fsync of the embedded database failed (${code}); stopping so that nothing unsynced is acknowledged\n`,
  )
  process.exit(1)
}

/** A WAL segment: pg_wal/ and 24 hexadecimal digits. */
const WAL_SEGMENT = /\/pg_wal\/[0-9A-F]{24}$/

const ZEROS = Buffer.alloc(128 * 1024)

/**
 * Whether a write (NODEFS's arguments: stream, memory, offset, length) is of zeros only: how
 * PostgreSQL extends a relation by new empty pages. A page of zeros holds no change, so it need not
 * wait for the WAL (the commit path extends the audit tables by a page every few events).
 */
function zeros([, memory, offset, length]: unknown[]): boolean {
  const view = memory as ArrayBufferView
  const n = length as number
  if (n > ZEROS.length) return false
  const bytes = Buffer.from(view.buffer, view.byteOffset + (offset as number), n)
  return bytes.equals(ZEROS.subarray(0, n))
}

/**
 * Gives NODEFS the host's fsync (a directory is opened to be synced: NODEFS holds no fd for it).
 * With `wal`, a WAL file's sync is left to it, and every other change to the data directory
 * syncs the WAL noted so far first.
 */
export function installHostFsync(mod: EmscriptenFs, wal?: WalSync) {
  const { NODEFS } = mod
  const walFiles = new WeakMap<object, boolean>()
  const isWal = (stream: NodefsStream) => {
    const node = stream.node as object
    let known = walFiles.get(node)
    if (known === undefined) {
      known = stream.nfd !== undefined && WAL_SEGMENT.test(NODEFS.realPath(node))
      walFiles.set(node, known)
    }
    return known
  }
  NODEFS.stream_ops.fsync = (stream) => {
    if (wal && stream.nfd !== undefined && isWal(stream)) {
      wal.defer(stream.nfd)
      return 0
    }
    wal?.flushNow()
    try {
      if (stream.nfd !== undefined) fs.fsyncSync(stream.nfd)
      else {
        const fd = fs.openSync(NODEFS.realPath(stream.node), 'r')
        try {
          fs.fsyncSync(fd)
        } finally {
          fs.closeSync(fd)
        }
      }
      return 0
    } catch (err) {
      return fatal(err)
    }
  }
  if (!wal) return
  const streams = NODEFS.stream_ops
  const write = streams.write!
  streams.write = (...args) => {
    if (!wal.settled && !isWal(args[0] as NodefsStream) && !zeros(args)) wal.flushNow()
    return write(...args)
  }
  const close = streams.close!
  streams.close = (stream) => {
    if (stream.nfd !== undefined && isWal(stream)) wal.beforeClose(stream.nfd)
    return close(stream)
  }
  const flushingFirst = <F extends Op>(op: F) =>
    ((...args: Parameters<F>) => {
      wal.flushNow()
      return op(...args)
    }) as F
  streams.setattr = flushingFirst(streams.setattr!)
  for (const name of ['setattr', 'unlink', 'rmdir'] as const)
    NODEFS.node_ops[name] = flushingFirst(NODEFS.node_ops[name]!)
  // A new WAL segment is written as a temporary file, then renamed: known again by its new name.
  const rename = flushingFirst(NODEFS.node_ops.rename!)
  NODEFS.node_ops.rename = (...args) => {
    walFiles.delete(args[0] as object)
    return rename(...args)
  }
}

/** NodeFS whose Emscripten module gets the host's fsync before PostgreSQL starts. */
class DurableNodeFS extends NodeFS {
  readonly #wal: WalSync

  constructor(dataDir: string, wal: WalSync) {
    super(dataDir)
    this.#wal = wal
  }

  override async init(pg: PGlite, opts: Parameters<NodeFS['init']>[1]) {
    const { emscriptenOpts } = await super.init(pg, opts)
    const preRun = [emscriptenOpts.preRun ?? []].flat()
    return {
      emscriptenOpts: {
        ...emscriptenOpts,
        preRun: [...preRun, (mod: unknown) => installHostFsync(mod as EmscriptenFs, this.#wal)],
      },
    }
  }
}

/**
 * PGlite options for a durable data directory at `dataDir`, and its WAL syncs: every caller must
 * wait for `wal.durable()` after its statements before it acts on them.
 */
export function durableDataDir(
  dataDir: string,
): Pick<PGliteOptions, 'fs' | 'startParams'> & { wal: WalSync } {
  const wal = new WalSync(fatal)
  return {
    wal,
    fs: new DurableNodeFS(dataDir, wal),
    startParams: [
      // Without -F, fsync is on (PostgreSQL's default).
      ...PGlite.defaultStartParams.filter((p) => p !== '-F'),
      '-c',
      'wal_sync_method=fsync',
    ],
  }
}
