import fs from 'node:fs'
import { PGlite, type PGliteOptions } from '@electric-sql/pglite'
import { NodeFS } from '@electric-sql/pglite/nodefs'

/**
 * PGlite's data directory on the host, made durable. PGlite starts PostgreSQL with fsync off
 * (`-F`), and Emscripten's NODEFS, which maps the data directory onto the host's files, has no
 * fsync at all: a commit reached the operating system's page cache, not the disk. It survived a
 * crash of the process, not one of the machine. Here PostgreSQL runs with fsync on and
 * `wal_sync_method=fsync`, and NODEFS's fsync is the host's: a commit returns once its WAL is on
 * disk, as on a PostgreSQL server (checkpoints sync the data files, and directories are synced
 * when files are created in them).
 *
 * A failed fsync stops the process at once, as PostgreSQL's PANIC stops the server: the data may
 * be gone from the page cache, so nothing may be acknowledged after it (PGlite, told of the error,
 * would hang on PostgreSQL's PANIC instead). The next start recovers from the WAL on disk.
 */

/** The parts of Emscripten's module this needs (PGlite does not type them). */
export interface EmscriptenFs {
  NODEFS: {
    stream_ops: { fsync?: (stream: NodefsStream) => number }
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

/** Gives NODEFS the host's fsync (a directory is opened to be synced: NODEFS holds no fd for it). */
export function installHostFsync(mod: EmscriptenFs) {
  mod.NODEFS.stream_ops.fsync = (stream) => {
    try {
      if (stream.nfd !== undefined) fs.fsyncSync(stream.nfd)
      else {
        const fd = fs.openSync(mod.NODEFS.realPath(stream.node), 'r')
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
}

/** NodeFS whose Emscripten module gets the host's fsync before PostgreSQL starts. */
class DurableNodeFS extends NodeFS {
  override async init(pg: PGlite, opts: Parameters<NodeFS['init']>[1]) {
    const { emscriptenOpts } = await super.init(pg, opts)
    const preRun = [emscriptenOpts.preRun ?? []].flat()
    return {
      emscriptenOpts: {
        ...emscriptenOpts,
        preRun: [...preRun, (mod: unknown) => installHostFsync(mod as EmscriptenFs)],
      },
    }
  }
}

/** PGlite options for a durable data directory at `dataDir`. */
export function durableDataDir(dataDir: string): Pick<PGliteOptions, 'fs' | 'startParams'> {
  return {
    fs: new DurableNodeFS(dataDir),
    startParams: [
      // Without -F, fsync is on (PostgreSQL's default).
      ...PGlite.defaultStartParams.filter((p) => p !== '-F'),
      '-c',
      'wal_sync_method=fsync',
    ],
  }
}
