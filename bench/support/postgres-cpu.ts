import { readdirSync, readFileSync } from 'node:fs'

const TICK_MS = 10 // USER_HZ is 100 on Linux

/**
 * CPU time (ms) used so far by every PostgreSQL server process on this machine, including
 * backends that already exited (their time is added to the postmaster's children's time when it
 * reaps them). Undefined where /proc is not readable (not Linux). Only meaningful when the
 * database server runs on the same machine, as in the benches.
 */
export function postgresCpuMs(): number | undefined {
  let ticks = 0
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return undefined
  }
  for (const pid of entries) {
    if (!/^\d+$/.test(pid)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue // exited meanwhile
    }
    const close = stat.lastIndexOf(')')
    const name = stat.slice(stat.indexOf('(') + 1, close)
    if (name !== 'postgres') continue
    // Fields after the command name: state is field 3; utime 14, stime 15, cutime 16, cstime 17.
    const f = stat.slice(close + 2).split(' ')
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
  }
  return ticks * TICK_MS
}
