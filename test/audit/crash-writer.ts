// Child process of crash.test.ts: writes a burst of audit events to PostgreSQL and prints the
// number of each event once `record` resolved (acknowledged), until it is killed. Its home is the
// parent's to make and remove (a process killed with SIGKILL cleans up nothing).
import { createAudit } from '../../src/audit/component.ts'
import { ManualClock } from '../../src/core/clock.ts'
import { openDb } from '../../src/core/db/index.ts'
import { event, runtimeFor } from './helpers.ts'
import { MemoryObjectStore } from './memory-store.ts'

const [url, home] = process.argv.slice(2) as [string, string]
const db = await openDb({ kind: 'postgres', url })
const audit = await createAudit(runtimeFor(db, home, new MemoryObjectStore(), new ManualClock()))
let n = 0
async function writer(w: number) {
  for (;;) {
    const i = n++
    const tenant = `crash-${w % 4}`
    if (i % 3 === 0)
      await db.transaction((tx) =>
        audit.sink.record(event(i, { tenant, correlationId: `ack-${i}` }), tx),
      )
    else await audit.sink.record(event(i, { tenant, correlationId: `ack-${i}` }))
    process.stdout.write(`${i}\n`)
  }
}
await Promise.all(Array.from({ length: 16 }, (_, w) => writer(w)))
