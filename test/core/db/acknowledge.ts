/**
 * Child process of pglite-durable.test.ts: opens the embedded database in argv[2] and commits
 * rows of about 2 kB from four writers at once, printing each row's id once its commit resolved (was
 * acknowledged), until it is killed.
 */
import { PgliteDb } from '../../../src/core/db/pglite.ts'

const db = await PgliteDb.open(process.argv[2])
await db.query('CREATE TABLE IF NOT EXISTS acked (id int PRIMARY KEY, pad text)')
let next = 0
const writer = async () => {
  for (;;) {
    const id = next++
    await db.transaction(async (tx) => {
      // About 2 kB that do not compress: the WAL soon moves on to its next segment file.
      await tx.query(
        `INSERT INTO acked SELECT $1, string_agg(md5(random()::text), '') FROM generate_series(1, 64)`,
        [id],
      )
    })
    process.stdout.write(`${id}\n`)
  }
}
await Promise.all([writer(), writer(), writer(), writer()])
