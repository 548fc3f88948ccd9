/**
 * Child process of pglite-durable.test.ts: opens the embedded database in argv[2], makes every
 * fsync of the host fail, and tries to commit a write. Prints `acknowledged` only if the commit
 * resolved (it must not).
 */
import fs from 'node:fs'
import { PgliteDb } from '../../../src/core/db/pglite.ts'

const db = await PgliteDb.open(process.argv[2])
await db.query('CREATE TABLE IF NOT EXISTS probe (v int)')
process.stdout.write('open\n')
fs.fsyncSync = () => {
  throw Object.assign(new Error('input/output error'), { code: 'EIO' })
}
await db.transaction(async (tx) => {
  await tx.query('INSERT INTO probe VALUES (1)')
})
process.stdout.write('acknowledged\n')
await db.close()
