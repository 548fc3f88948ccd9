import canonicalize from 'canonicalize'
import type { Queryable } from '../core/db/index.ts'
import type { TenantSpec } from './spec.ts'
import { sha256 } from './types.ts'

/** One stored version of a tenant's spec (isolation.specs). */
export interface SpecRecord {
  tenant: string
  version: number
  hash: string
  spec: TenantSpec
  createdAt: Date
}

/** SHA-256 of the spec's RFC 8785 canonical JSON: equal specs, equal hashes. */
export function specHash(spec: TenantSpec): string {
  return sha256(canonicalize(spec)!)
}

/** The tenant's latest spec, or the given version; undefined when there is none. */
export async function loadSpec(
  q: Queryable,
  tenant: string,
  version?: number,
): Promise<SpecRecord | undefined> {
  const res = await q.query<{
    version: number
    spec: TenantSpec
    spec_hash: string
    created_at: Date
  }>(
    version
      ? 'SELECT version, spec, spec_hash, created_at FROM isolation.specs WHERE tenant = $1 AND version = $2'
      : 'SELECT version, spec, spec_hash, created_at FROM isolation.specs WHERE tenant = $1 ORDER BY version DESC LIMIT 1',
    version ? [tenant, version] : [tenant],
  )
  const row = res.rows[0]
  if (!row) return undefined
  return {
    tenant,
    version: row.version,
    hash: row.spec_hash,
    spec: row.spec,
    createdAt: new Date(row.created_at),
  }
}

/** Stores `record` as a new version (the caller holds the tenant's lock and chose the number). */
export async function insertSpec(q: Queryable, record: SpecRecord, createdBy: string) {
  await q.query(
    `INSERT INTO isolation.specs (tenant, version, spec, spec_hash, created_at, created_by)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [
      record.tenant,
      record.version,
      record.spec as unknown as Record<string, unknown>,
      record.hash,
      record.createdAt,
      createdBy,
    ],
  )
}
