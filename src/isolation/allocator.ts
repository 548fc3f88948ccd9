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

  async lockFabric(tx: Transaction, fabric: string, now: Date) {
    const ranges = this.ranges(fabric)
    // One upsert records the configured ranges and row-locks the pools (in POOL_NAMES order).
    await tx.query(
      `INSERT INTO isolation.pools (fabric, pool, lo, hi)
       SELECT $1, p, l, h FROM unnest($2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS x(p, l, h, o)
       ORDER BY o
       ON CONFLICT (fabric, pool) DO UPDATE SET lo = EXCLUDED.lo, hi = EXCLUDED.hi`,
      [
        fabric,
        [...POOL_NAMES],
        POOL_NAMES.map((p) => ranges[p].lo),
        POOL_NAMES.map((p) => ranges[p].hi),
      ],
    )
    // Values whose quarantine ended are free again.
    await tx.query(
      `DELETE FROM isolation.allocations
       WHERE fabric = $1 AND state = 'quarantined' AND available_at <= $2`,
      [fabric, now],
    )
  }

  /** The tenant's number for `purpose`: kept if it has one, else a free value (see below). */
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
    // Values go out in increasing order (one past the highest in the range, found through the
    // primary key); only once the top is reached are gaps reused, lowest first. So a released
    // value normally rests far longer than its quarantine before anyone gets it again.
    const top = await tx.query<{ m: number | null }>(
      `SELECT max(value) AS m FROM isolation.allocations
       WHERE fabric = $1 AND pool = $2 AND value >= $3 AND value <= $4`,
      [a.fabric, a.pool, lo, hi],
    )
    let v: number | undefined =
      top.rows[0]?.m === null || top.rows[0]?.m === undefined ? lo : top.rows[0].m + 1
    if (v > hi) {
      const gap = await tx.query<{ v: number }>(
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
      v = gap.rows[0]?.v
    }
    if (v === undefined) throw exhausted(a.fabric, a.pool, lo, hi)
    await tx.query(
      `INSERT INTO isolation.allocations (fabric, pool, value, tenant, purpose, state, allocated_at)
       VALUES ($1, $2, $3, $4, $5, 'active', $6)`,
      [a.fabric, a.pool, v, a.tenant, a.purpose, a.now],
    )
    return v
  }

  /**
   * Claims unique names for the tenant in one statement; fails, naming the first one, when another
   * tenant holds one of them or has it in quarantine.
   */
  async claimAll(
    tx: Transaction,
    tenant: string,
    claims: readonly { kind: ClaimKind; scope: string; name: string }[],
    now: Date,
  ) {
    const unique = [...new Map(claims.map((c) => [`${c.kind}/${c.scope}/${c.name}`, c])).values()]
    if (unique.length === 0) return
    const res = await tx.query<{ kind: string; scope: string; name: string }>(
      `INSERT INTO isolation.claims AS c (kind, scope, name, tenant, state, claimed_at)
       SELECT k, s, n, $4, 'active', $5 FROM unnest($1::text[], $2::text[], $3::text[]) AS x(k, s, n)
       ON CONFLICT (kind, scope, name) DO UPDATE
         SET tenant = EXCLUDED.tenant, state = 'active', available_at = NULL,
             claimed_at = CASE WHEN c.state = 'active' THEN c.claimed_at ELSE EXCLUDED.claimed_at END
         WHERE c.tenant = EXCLUDED.tenant OR (c.state = 'quarantined' AND c.available_at <= $5)
       RETURNING kind, scope, name`,
      [
        unique.map((c) => c.kind),
        unique.map((c) => c.scope),
        unique.map((c) => c.name),
        tenant,
        now,
      ],
    )
    if (res.rows.length === unique.length) return
    const got = new Set(res.rows.map((r) => `${r.kind}/${r.scope}/${r.name}`))
    const miss = unique.find((c) => !got.has(`${c.kind}/${c.scope}/${c.name}`))!
    const held = await tx.query<{ state: string }>(
      'SELECT state FROM isolation.claims WHERE kind = $1 AND scope = $2 AND name = $3',
      [miss.kind, miss.scope, miss.name],
    )
    throw taken(miss.kind, miss.scope, miss.name, held.rows[0]?.state === 'quarantined')
  }

  async claim(
    tx: Transaction,
    c: { kind: ClaimKind; scope: string; name: string; tenant: string; now: Date },
  ) {
    await this.claimAll(tx, c.tenant, [c], c.now)
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
