import { type ChildProcess, spawn } from 'node:child_process'
import { DFLARE_BIN } from './cli.ts'

/** A `dflare serve` (or `up`) child process, started and parsed from its JSON log. */
export interface ServeProcess {
  child: ChildProcess
  pid: number
  /** The public HTTPS listener. */
  url: URL
  /** The internal mTLS listener, when the process serves audit, authz or iam. */
  internalUrl: URL | undefined
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[]
  stderr(): string
  /** Sends SIGHUP (renew the process's service certificates now). */
  hup(): void
  /** SIGTERM, then waits for the exit code. */
  stop(): Promise<number | null>
}

/** The environment without the caller's DFLARE_* settings and DATABASE_URL. */
export function cleanEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (e): e is [string, string] =>
        e[1] !== undefined && !e[0].startsWith('DFLARE_') && e[0] !== 'DATABASE_URL',
    ),
  )
}

/** Spawns `dflare ARGS` and resolves once it logged "dflare is up" (rejects if it exits first). */
export function startDflare(
  args: string[],
  env: Record<string, string>,
  options: { timeoutMs?: number } = {},
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [DFLARE_BIN, ...args], {
    env: { ...cleanEnv(), DFLARE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const logs: Record<string, unknown>[] = []
  let err = ''
  let partial = ''
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  )
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`dflare ${args.join(' ')} not up in time; stderr: ${err.slice(-2000)}`))
    }, options.timeoutMs ?? 120_000)
    child.stderr!.on('data', (d) => {
      err += d
    })
    child.stdout!.on('data', (d) => {
      partial += d
      const lines = partial.split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        if (!line.trim()) continue
        let entry: Record<string, unknown>
        try {
          entry = JSON.parse(line)
        } catch {
          continue
        }
        logs.push(entry)
        if (entry.msg === 'dflare is up') {
          clearTimeout(timer)
          resolve({
            child,
            pid: child.pid!,
            url: new URL(String(entry.url)),
            internalUrl: entry.internalUrl ? new URL(String(entry.internalUrl)) : undefined,
            logs,
            stderr: () => err,
            hup: () => child.kill('SIGHUP'),
            async stop() {
              if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
              return exited
            },
          })
        }
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(
        new Error(`dflare ${args.join(' ')} exited with ${code} before it was up: ${err.trim()}`),
      )
    })
  })
}

/** `https://host:port` without the trailing slash, for settings. */
export function origin(url: URL): string {
  return url.origin
}
