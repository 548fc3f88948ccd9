/**
 * Child process of pglite-vacuum.test.ts: opens an embedded database whose vacuum looks every
 * 200 ms (passes closer together than PostgreSQL's second between statistics reports, so that
 * each would leave statistics pending), gives it a table to vacuum, then does nothing more.
 * Closes it when the process runs out of work (as test helpers do) and prints `exited`: the
 * process must get there on its own, not be kept alive by its own maintenance.
 */
import { PgliteDb } from '../../../src/core/db/pglite.ts'

const db = await PgliteDb.open(process.argv[2], { vacuum: { intervalMs: 200 } })
await db.query('CREATE TABLE churn (id bigserial PRIMARY KEY, body text)')
await db.query("INSERT INTO churn (body) SELECT repeat('x', 800) FROM generate_series(1, 500)")
await db.query('DELETE FROM churn')
process.once('beforeExit', () => {
  void db.close().then(() => process.stdout.write('exited\n'))
})
