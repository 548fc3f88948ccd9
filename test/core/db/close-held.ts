/**
 * Child process of held-read.test.ts: holds a read, then closes the database with nothing else
 * keeping the process alive. Prints `closed` only if close() resolved (a close that waited for a
 * holder who never comes back would leave the process to exit with the promise unsettled).
 */
import { holdNextRead } from '../../../src/core/db/held-read.ts'
import { migratedDatabase } from '../../support/db.ts'

const t = await migratedDatabase()
holdNextRead()
await t.db.transaction((q) => q.query('SELECT 1'), { readOnly: true })
await t.close()
process.stdout.write('closed\n')
