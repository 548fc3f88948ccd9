import type { Transaction } from '../core/db/index.ts'
import { PROBLEM_BASE, Problem } from '../core/errors.ts'
import { POOL_NAMES, type PoolConfig, type PoolName } from './pools.ts'

/** Kinds of unique names; `scope` is the cluster or fabric they are unique in. */
export type ClaimKind =
  | 'switch-port'
  | 'ib-guid'
  | 'cidr'
  | 'k8s-namespace'
  | 'slurm-account'
  | 'slurm-qos'
  | 'slurm-partition'
  | 'slurm-user'
  | 'slurm-node'
  | 'storage-export'
  | 'nft-set'

export const exhausted = (fabric: string, pool: string, lo: number, hi: number) =>
  new Problem({
    status: 409,
    title: 'Pool exhausted',
    type: `${PROBLEM_BASE}pool-exhausted`,
    detail: `Pool ${pool} of fabric ${fabric} (${lo}-${hi}) has no free value; values in quarantine become free when it ends`,
    extensions: { pool, fabric },
  })

const taken = (kind: string, scope: string, name: string, quarantined: boolean) =>
  new Problem({
    status: 409,
    title: 'Resource held by another tenant',
    type: `${PROBLEM_BASE}isolation-conflict`,
    detail: `${kind} "${name}" in ${scope} ${quarantined ? 'is in quarantine after another tenant released it' : 'belongs to another tenant'}`,
    extensions: { kind, scope, name },
  })

/**
 * Database-backed allocators. Callers run inside one transaction per tenant operation and call
 * `lockFabric` first: it row-locks the fabric's pool rows in a fixed order, which serializes
 * allocation per fabric across processes (and avoids deadlocks). Primary keys on (pool, value)
 * and (kind, scope, name) are the backstop: even a bug here cannot hand one value to two tenants.
 */
export class Allocator {
  readonly #pools: PoolConfig
  readonly #quarantineMs: number

  constructor(pools: PoolConfig, quarantineMs: number) {
    this.#pools = pools
    this.#quarantineMs = quarantineMs
  }

  ranges(fabric: string) {
    const r = this.#pools[fabric]
    if (!r)
      throw new Problem({
        status: 400,
        title: 'Bad Request',
        type: `${PROBLEM_BASE}invalid-request`,
        detail: `fabric: "${fabric}" is not configured (isolation.pools)`,
        extensions: { errors: [{ field: 'fabric', message: 'is not a configured fabric' }] },
      })
    return r
  }

  async lockFabric(tx: Transaction, fabric: string) {
    const ranges = this.ranges(fabric)
    for (const pool of POOL_NAMES) {
      // The upsert both records the configured range and takes the row lock until commit.
      await tx.query(
        `INSERT INTO isolation.pools (fabric, pool, lo, hi) VALUES ($1, $2, $3, $4)
         ON CONFLICT (fabric, pool) DO UPDATE SET lo = EXCLUDED.lo, hi = EXCLUDED.hi`,
        [fabric, pool, ranges[pool].lo, ranges[pool].hi],
      )
    }
  }

  /** The tenant's number for `purpose`: kept if it has one, else the lowest free value. */
  async number(
    tx: Transaction,
    a: { fabric: string; pool: PoolName; tenant: string; purpose: string; now: Date },
  ): Promise<number> {
    const { lo, hi } = this.ranges(a.fabric)[a.pool]
    const own = await tx.query<{ value: number; state: string }>(
      `SELECT value, state FROM isolation.allocations
       WHERE fabric = $1 AND pool = $2 AND tenant = $3 AND purpose = $4
       ORDER BY state = 'active' DESC, value LIMIT 1`,
      [a.fabric, a.pool, a.tenant, a.purpose],
    )
    const mine = own.rows[0]
    if (mine?.state === 'active') return mine.value
    if (mine) {
      // A value the same tenant released: taking it back shares nothing with anyone.
      await tx.query(
        `UPDATE isolation.allocations SET state = 'active', available_at = NULL, allocated_at = $4
         WHERE fabric = $1 AND pool = $2 AND value = $3`,
        [a.fabric, a.pool, mine.value, a.now],
      )
      return mine.value
    }
    await tx.query(
      `DELETE FROM isolation.allocations
       WHERE fabric = $1 AND pool = $2 AND state = 'quarantined' AND available_at <= $3`,
      [a.fabric, a.pool, a.now],
    )
    // Lowest free value: the range start or one past an allocated value, not itself allocated.
    const free = await tx.query<{ v: number }>(
      `SELECT c.v FROM (
         SELECT $3::bigint AS v
         UNION ALL
         SELECT value + 1 FROM isolation.allocations
         WHERE fabric = $1 AND pool = $2 AND value >= $3 AND value < $4
       ) c
       WHERE NOT EXISTS (
         SELECT 1 FROM isolation.allocations x WHERE x.fabric = $1 AND x.pool = $2 AND x.value = c.v)
       ORDER BY c.v LIMIT 1`,
      [a.fabric, a.pool, lo, hi],
    )
    const v = free.rows[0]?.v
    if (v === undefined) throw exhausted(a.fabric, a.pool, lo, hi)
    await tx.query(
      `INSERT INTO isolation.allocations (fabric, pool, value, tenant, purpose, state, allocated_at)
       VALUES ($1, $2, $3, $4, $5, 'active', $6)`,
      [a.fabric, a.pool, v, a.tenant, a.purpose, a.now],
    )
    return v
  }

  /** Claims a unique name for the tenant; fails when another tenant holds it or has it in quarantine. */
  async claim(
    tx: Transaction,
    c: { kind: ClaimKind; scope: string; name: string; tenant: string; now: Date },
  ) {
    const res = await tx.query<{ tenant: string }>(
      `INSERT INTO isolation.claims AS c (kind, scope, name, tenant, state, claimed_at)
       VALUES ($1, $2, $3, $4, 'active', $5)
       ON CONFLICT (kind, scope, name) DO UPDATE
         SET tenant = EXCLUDED.tenant, state = 'active', available_at = NULL,
             claimed_at = CASE WHEN c.state = 'active' THEN c.claimed_at ELSE EXCLUDED.claimed_at END
         WHERE c.tenant = EXCLUDED.tenant OR (c.state = 'quarantined' AND c.available_at <= $5)
       RETURNING tenant`,
      [c.kind, c.scope, c.name, c.tenant, c.now],
    )
    if (res.rows.length === 0) {
      const held = await tx.query<{ state: string }>(
        'SELECT state FROM isolation.claims WHERE kind = $1 AND scope = $2 AND name = $3',
        [c.kind, c.scope, c.name],
      )
      throw taken(c.kind, c.scope, c.name, held.rows[0]?.state === 'quarantined')
    }
  }

  /** Fails when `cidr` overlaps a network another tenant holds (or has in quarantine) in the fabric. */
  async assertNoOverlap(
    tx: Transaction,
    a: { fabric: string; cidr: string; tenant: string; now: Date },
  ) {
    const res = await tx.query<{ name: string; state: string }>(
      `SELECT name, state FROM isolation.claims
       WHERE kind = 'cidr' AND scope = $1 AND tenant <> $2 AND name::cidr && $3::cidr
         AND (state = 'active' OR available_at > $4)
       LIMIT 1`,
      [a.fabric, a.tenant, a.cidr, a.now],
    )
    const hit = res.rows[0]
    if (hit)
      throw taken('cidr', a.fabric, `${a.cidr} (overlaps ${hit.name})`, hit.state !== 'active')
  }

  /**
   * Puts every active number and name of the tenant that is not in `keep` into quarantine.
   * Keys: `fabric/pool/purpose` for numbers, `kind/scope/name` for claims. Empty sets release everything.
   */
  async releaseExcept(
    tx: Transaction,
    tenant: string,
    keep: { numbers: ReadonlySet<string>; claims: ReadonlySet<string> },
    now: Date,
  ) {
    const until = new Date(now.getTime() + this.#quarantineMs)
    await tx.query(
      `UPDATE isolation.allocations SET state = 'quarantined', available_at = $3
       WHERE tenant = $1 AND state = 'active' AND NOT ((fabric || '/' || pool || '/' || purpose) = ANY($2::text[]))`,
      [tenant, [...keep.numbers], until],
    )
    await tx.query(
      `UPDATE isolation.claims SET state = 'quarantined', available_at = $3
       WHERE tenant = $1 AND state = 'active'
         AND NOT ((kind || '/' || scope || '/' || name) = ANY($2::text[]))`,
      [tenant, [...keep.claims], until],
    )
  }
}
