import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const DFLARE_BIN = fileURLToPath(new URL('../../bin/dflare.js', import.meta.url))

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `dflare ARGS` in a child process on this Node, with only the given DFLARE_* env. */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('DFLARE_') && k !== 'DATABASE_URL'),
  )
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DFLARE_BIN, ...args], { env: { ...base, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}
