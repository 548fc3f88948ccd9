import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'

/**
 * The embedded database belongs to one process: two processes opening the same PGlite data
 * directory would corrupt it. `lockDataDir` creates `<dataDir>.lock` holding the owner's pid,
 * exclusively; a lock whose process is gone is taken over. The returned function releases it.
 */
export class DataDirLocked extends Error {
  override name = 'DataDirLocked'
  readonly pid: number
  constructor(path: string, pid: number) {
    super(
      `the embedded database ${path} is in use by process ${pid} (another dflare up or serve; if there is none, remove ${path}.lock); several processes need PostgreSQL (DATABASE_URL)`,
    )
    this.pid = pid
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Locks this process holds (a lock file with our own pid and not in here is stale). */
const held = new Set<string>()

export function lockDataDir(dataDir: string): () => void {
  const path = `${dataDir}.lock`
  if (held.has(path)) throw new DataDirLocked(dataDir, process.pid)
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number
    try {
      fd = openSync(path, 'wx', 0o600)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      let pid = Number.NaN
      try {
        pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10)
      } catch {
        // unreadable or vanished: treat as stale
      }
      if (alive(pid)) throw new DataDirLocked(dataDir, pid)
      try {
        unlinkSync(path)
      } catch {
        // another process took it over first; the next attempt sees its lock
      }
      continue
    }
    writeSync(fd, `${process.pid}\n`)
    closeSync(fd)
    held.add(path)
    let released = false
    return () => {
      if (released) return
      released = true
      held.delete(path)
      try {
        if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path)
      } catch {
        // already gone
      }
    }
  }
  throw new DataDirLocked(dataDir, Number.NaN)
}
