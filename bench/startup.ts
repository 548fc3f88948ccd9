/**
 * Start-up time and memory of `dflare up` with an existing home (the embedded default):
 * spawns the real CLI, waits for "dflare is up", records the wall time from spawn and the
 * resident memory it reports, then stops it with SIGTERM. The first run creates the home.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const BIN = fileURLToPath(new URL('../bin/dflare.js', import.meta.url))

function once(home: string): Promise<{ wallMs: number; startupMs: number; rssMiB: number }> {
  const started = performance.now()
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('DFLARE_') && k !== 'DATABASE_URL'),
  )
  const child = spawn(process.execPath, [BIN, 'up'], {
    env: { ...env, DFLARE_HOME: home, DFLARE_LISTEN: 'https://127.0.0.1:0' },
  })
  return new Promise((resolve, reject) => {
    let out = ''
    let seen = false
    child.stdout.on('data', (d) => {
      out += d
      for (const line of out.split('\n')) {
        if (seen || !line.includes('"dflare is up"')) continue
        seen = true
        const entry = JSON.parse(line)
        const wallMs = performance.now() - started
        child.once('exit', () =>
          resolve({ wallMs, startupMs: entry.startupMs, rssMiB: entry.rssMiB }),
        )
        child.kill('SIGTERM')
        return
      }
    })
    child.once('error', reject)
    child.once(
      'exit',
      (code, signal) =>
        code !== 0 && reject(new Error(`dflare up exited ${code ?? signal}: ${out.slice(-400)}`)),
    )
  })
}

export default async function (args: string[]) {
  const runs = Number(args.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5)
  const home = await mkdtemp(join(tmpdir(), 'dflare-bench-'))
  try {
    const first = await once(home)
    const warm: Awaited<ReturnType<typeof once>>[] = []
    for (let i = 0; i < runs; i++) warm.push(await once(home))
    const wall = warm.map((r) => r.wallMs).sort((a, b) => a - b)
    return {
      firstBootMs: Math.round(first.wallMs),
      existingHome: {
        runs,
        wallMsMedian: Math.round(wall[Math.floor(wall.length / 2)]!),
        wallMsMax: Math.round(wall.at(-1)!),
        inProcessMsMedian: Math.round(
          warm.map((r) => r.startupMs).sort((a, b) => a - b)[Math.floor(runs / 2)]!,
        ),
        rssMiBMedian: warm.map((r) => r.rssMiB).sort((a, b) => a - b)[Math.floor(runs / 2)],
      },
      peer: { name: 'Keycloak (published sizing)', memoryMiBPerInstance: 1250 },
    }
  } finally {
    await rm(home, { recursive: true, force: true })
  }
}
