import type { Db, Queryable, Transaction } from '../core/db/index.ts'

/**
 * Runs `fn` as the restricted role `dflare_app` with `dflare.tenant` set, so grants and
 * row-level security confine it to the tenant whatever its SQL says (defence in depth behind
 * the gateway's checks). Inside an existing transaction the role is reset afterwards, so the
 * gateway's own writes (audit, idempotency) keep their privileges.
 */
export async function inTenant<T>(
  tx: Transaction,
  tenant: string,
  fn: (q: Queryable) => Promise<T>,
): Promise<T> {
  await tx.query("SELECT set_config('dflare.tenant', $1, true)", [tenant])
  await tx.query('SET LOCAL ROLE dflare_app')
  try {
    return await fn(tx)
  } finally {
    await tx.query('RESET ROLE')
    await tx.query("SELECT set_config('dflare.tenant', '', true)")
  }
}

/**
 * A read-only transaction as `dflare_app` in `tenant`. BEGIN leaves with the first read (one
 * round trip less); the read's result is only used once BEGIN, the role and the tenant applied.
 */
export function readInTenant<T>(
  db: Db,
  tenant: string,
  fn: (q: Queryable) => Promise<T>,
): Promise<T> {
  return db.transaction(fn, {
    role: 'dflare_app',
    settings: { 'dflare.tenant': tenant },
    readOnly: true,
    pipelineBegin: true,
  })
}
