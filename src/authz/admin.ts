/**
 * Tenant policy administration: versioned policy sets per tenant, validation (syntax, schema,
 * tenant confinement) with line and column, activation, rollback, and dry-runs that replay the
 * recently recorded requests against a candidate version and report which decisions change.
 */
import type { Db, Queryable, Transaction } from '../core/db/index.ts'
import { problems } from '../core/errors.ts'
import { UnsupportedPolicyError } from './cedar/errors.ts'
import {
  assertSupported,
  lineColumn,
  type ParsedPolicy,
  type PolicyProblem,
  PolicyTextError,
  parsePolicySetText,
  validatePolicyText,
} from './cedar/parse.ts'
import { CompiledPolicySet, type JsonNode, type PolicySource } from './cedar/policyset.ts'
import type { Decision } from './contract.ts'
import type { createPdp, RecentRequests } from './pdp.ts'
import type { PolicySets, TenantPolicySource } from './policysets.ts'
import { NAMESPACE, SCHEMA_TEXT } from './schema.ts'
import { bumpRevision, notifyChange } from './writer.ts'

const RESERVED_PREFIXES = ['platform.', 'binding:', 'role:']
const MAX_TEXT = 256 * 1024

export interface PolicyVersion {
  tenant: string
  version: number
  author: string
  comment: string
  createdAt: Date
  active: boolean
}

/** Entity references anywhere in a policy (scope constraints and literals). */
function entityRefs(node: unknown, out: { type: string; id: string }[]) {
  if (Array.isArray(node)) for (const x of node) entityRefs(x, out)
  else if (node && typeof node === 'object') {
    const o = node as JsonNode
    if (typeof o.type === 'string' && typeof o.id === 'string' && Object.keys(o).length === 2)
      out.push({ type: o.type, id: o.id })
    for (const v of Object.values(o)) entityRefs(v, out)
  }
}

function positionOf(text: string, policy: ParsedPolicy) {
  const at = text.indexOf(policy.text.slice(0, 40))
  return at >= 0 ? lineColumn(text, Buffer.byteLength(text.slice(0, at))) : {}
}

/** Validates a tenant's policy text; returns the parsed policies or throws PolicyTextError. */
export function validateTenantPolicies(tenant: string, text: string): PolicySource[] {
  if (typeof text !== 'string' || text.length > MAX_TEXT)
    throw new PolicyTextError([
      { message: `policy text must be a string of at most ${MAX_TEXT} bytes` },
    ])
  const parsed = parsePolicySetText(text)
  // Cedar names policies of a text set policy0, policy1, … in textual order: show our ids.
  const found: PolicyProblem[] = validatePolicyText(text, SCHEMA_TEXT).map((p) => {
    const n = /^policy(\d+)$/.exec(p.policy ?? '')
    return n && parsed[Number(n[1])] ? { ...p, policy: parsed[Number(n[1])]!.id } : p
  })
  for (const p of parsed) {
    const where = positionOf(text, p)
    if (RESERVED_PREFIXES.some((r) => p.id.startsWith(r)))
      found.push({
        policy: p.id,
        message: `policy ids starting with ${RESERVED_PREFIXES.join(', ')} are reserved`,
        ...where,
      })
    const refs: { type: string; id: string }[] = []
    entityRefs(p.json, refs)
    for (const r of refs) {
      const otherTenant = r.type === `${NAMESPACE}::Tenant` && r.id !== tenant
      const otherBinding = r.type === `${NAMESPACE}::RoleBinding` && !r.id.startsWith(`${tenant}/`)
      if (otherTenant || otherBinding)
        found.push({
          policy: p.id,
          message: `policy names ${r.type}::${JSON.stringify(r.id)} of another tenant`,
          ...where,
        })
    }
    try {
      assertSupported(p.json, p.id)
    } catch (err) {
      found.push({ policy: p.id, message: (err as Error).message, ...where })
    }
  }
  if (found.length > 0) throw new PolicyTextError(found)
  const sources = parsed.map(({ id, json }) => ({ id, json }))
  try {
    new CompiledPolicySet(sources)
  } catch (err) {
    if (err instanceof UnsupportedPolicyError) throw new PolicyTextError([{ message: err.message }])
    throw err
  }
  return sources
}

export interface DryRunChange {
  at: Date
  principal: { type: string; id: string }
  action: { type: string; id: string }
  resource: { type: string; id: string }
  before: Pick<Decision, 'decision' | 'determining'>
  after: Pick<Decision, 'decision' | 'determining'>
}

export interface DryRunReport {
  replayed: number
  changed: DryRunChange[]
}

type Pdp = ReturnType<typeof createPdp>

export class PolicyAdmin implements TenantPolicySource {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  /** Active custom policies of a tenant (already validated when they were published). */
  async active(tenant: string): Promise<PolicySource[]> {
    const { rows } = await this.#db.query<{ text: string }>(
      `SELECT v.text FROM authz.active_policies a
         JOIN authz.policy_versions v USING (tenant, version) WHERE a.tenant = $1`,
      [tenant],
    )
    if (rows.length === 0) return []
    return parsePolicySetText(rows[0]!.text).map(({ id, json }) => ({ id, json }))
  }

  async versions(tenant: string): Promise<PolicyVersion[]> {
    const { rows } = await this.#db.query<{
      version: number
      author: string
      comment: string
      created_at: Date
      active: boolean
    }>(
      `SELECT v.version, v.author, v.comment, v.created_at, (a.version IS NOT NULL) AS active
         FROM authz.policy_versions v
         LEFT JOIN authz.active_policies a ON a.tenant = v.tenant AND a.version = v.version
        WHERE v.tenant = $1 ORDER BY v.version`,
      [tenant],
    )
    return rows.map((r) => ({
      tenant,
      version: r.version,
      author: r.author,
      comment: r.comment,
      createdAt: r.created_at,
      active: r.active,
    }))
  }

  async text(tenant: string, version: number, q: Queryable = this.#db): Promise<string> {
    const { rows } = await q.query<{ text: string }>(
      'SELECT text FROM authz.policy_versions WHERE tenant = $1 AND version = $2',
      [tenant, version],
    )
    if (!rows[0]) throw problems.notFound(`policy version ${version} does not exist`)
    return rows[0].text
  }

  /** Stores a validated new version and makes it active, in the caller's transaction. */
  async publish(
    tx: Transaction,
    input: { tenant: string; text: string; author: string; comment?: string },
  ): Promise<number> {
    validateTenantPolicies(input.tenant, input.text)
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`authz.policy:${input.tenant}`])
    const { rows } = await tx.query<{ next: number }>(
      'SELECT coalesce(max(version), 0) + 1 AS next FROM authz.policy_versions WHERE tenant = $1',
      [input.tenant],
    )
    const version = rows[0]!.next
    await tx.query(
      'INSERT INTO authz.policy_versions (tenant, version, text, author, comment) VALUES ($1, $2, $3, $4, $5)',
      [input.tenant, version, input.text, input.author, input.comment ?? ''],
    )
    await this.#activate(tx, input.tenant, version)
    return version
  }

  /** Makes an earlier version active again. */
  async rollback(tx: Transaction, tenant: string, version: number): Promise<void> {
    await this.text(tenant, version, tx)
    await this.#activate(tx, tenant, version)
  }

  async #activate(tx: Transaction, tenant: string, version: number) {
    await tx.query(
      `INSERT INTO authz.active_policies (tenant, version) VALUES ($1, $2)
       ON CONFLICT (tenant) DO UPDATE SET version = EXCLUDED.version, activated_at = now()`,
      [tenant, version],
    )
    const revision = await bumpRevision(tx)
    await notifyChange(tx, { revision, policyTenants: [tenant] })
  }

  /**
   * Replays the tenant's recently recorded requests against `text` (not stored) with today's
   * entities, and reports the decisions that would change.
   */
  async dryRun(
    pdp: Pdp,
    sets: PolicySets,
    recent: RecentRequests,
    tenant: string,
    text: string,
  ): Promise<DryRunReport> {
    const candidate = validateTenantPolicies(tenant, text)
    const current = await sets.for(tenant)
    const candidateTenant = await sets.withCustom(tenant, candidate)
    const replay = recent.of(tenant)
    const changed: DryRunChange[] = []
    let replayed = 0
    for (const r of replay) {
      const prepared = await pdp.prepare(r.request, true)
      if ('decision' in prepared || prepared.tenant !== tenant) continue
      replayed++
      const now = pdp.evaluate(prepared, current)
      const next = pdp.evaluate(prepared, {
        global: current.global,
        tenant: candidateTenant,
      })
      if (now.decision !== next.decision || now.determining.join() !== next.determining.join())
        changed.push({
          at: r.at,
          principal: r.request.principal,
          action: r.request.action,
          resource: r.request.resource,
          before: { decision: now.decision, determining: now.determining },
          after: { decision: next.decision, determining: next.determining },
        })
    }
    return { replayed, changed }
  }
}
