/**
 * Child process of pglite-durable.test.ts: opens the embedded database in argv[2], makes every
 * fsync of the host fail (synchronous or not), and tries to commit a write. Prints `acknowledged` only if the commit
 * resolved (it must not).
 */
import fs from 'node:fs'
import { PgliteDb } from '../../../src/core/db/pglite.ts'

const db = await PgliteDb.open(process.argv[2])
await db.query('CREATE TABLE IF NOT EXISTS probe (v int)')
process.stdout.write('open\n')
const eio = () => Object.assign(new Error('input/output error'), { code: 'EIO' })
fs.fsyncSync = () => {
  throw eio()
}
// The WAL is synced off the event loop (pglite-wal-sync.ts).
fs.fsync = ((_fd: number, done: (err: Error) => void) => done(eio())) as typeof fs.fsync
await db.transaction(async (tx) => {
  await tx.query('INSERT INTO probe VALUES (1)')
})
process.stdout.write('acknowledged\n')
await db.close()
