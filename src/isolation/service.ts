import canonicalize from 'canonicalize'
import type { EntityRecord, EntityUid, Pdp } from '../authz/contract.ts'
import type { Clock } from '../core/clock.ts'
import type { Values } from '../core/config/index.ts'
import type { Db, Transaction } from '../core/db/index.ts'
import { PROBLEM_BASE, Problem, problems } from '../core/errors.ts'
import type { Actor, EventSink } from '../core/events.ts'
import { Allocator } from './allocator.ts'
import type { Driver } from './drivers/types.ts'
import { renderAll } from './render/index.ts'
import { allocate, type Resources } from './resources.ts'
import type { isolationSettings } from './settings.ts'
import { readSpec, TENANT_NAME, type TenantSpec } from './spec.ts'
import { insertSpec, loadSpec, type SpecRecord, specHash } from './spec-store.ts'
import {
  type Change,
  type DesiredObject,
  DRIVERS,
  type DriverName,
  LAYER_OF,
  sha256,
} from './types.ts'
import { type VerifyReport, verifyAll } from './verify.ts'

export type IsolationConfig = Values<typeof isolationSettings>

/** Who asks: an authenticated principal of some realm; only the platform realm may act here. */
export interface Caller {
  principal: EntityUid
  realm: string
  actor: Actor
  correlationId?: string
  /** Cedar request context from the gateway (amr, auth_time, ip, token scope); apply and destroy need MFA. */
  context?: Record<string, unknown>
}

/** The Cedar action (schema in src/authz/schema.ts) each operation is authorized as. */
const CEDAR_ACTION = {
  // Storing a spec decides what the next apply does: it needs the apply permission.
  PutTenantSpec: 'tenantspec.apply',
  ReadTenantSpec: 'tenantspec.read',
  PlanTenant: 'tenantspec.plan',
  ApplyTenant: 'tenantspec.apply',
  DestroyTenant: 'tenantspec.destroy',
  VerifyIsolation: 'tenantspec.read',
} as const

/** The tenant's spec as a Cedar resource (in its Tenant); verify reads the platform-wide view. */
export function specEntity(tenant: string): EntityRecord {
  return {
    uid: { type: 'Dflare::TenantSpec', id: `${tenant}/spec` },
    tenant,
    attrs: { tenant, name: tenant === 'platform' ? 'all-tenants' : 'spec' },
    parents: [{ type: 'Dflare::Tenant', id: tenant }],
  }
}

export interface IsolationDeps {
  db: Db
  clock: Clock
  events: EventSink
  pdp: Pdp
  /** Layer 1: whether the tenant's realm exists (provided by iam). */
  realmExists: (tenant: string) => Promise<boolean>
  drivers: Record<DriverName, Driver>
  config: IsolationConfig
}

export interface Plan {
  tenant: string
  operation: 'apply' | 'destroy'
  /** Spec version the plan realizes (null for destroy). */
  specVersion: number | null
  hash: string
  resources: Resources | null
  changes: Change[]
  summary: { create: number; change: number; remove: number }
}

export interface ApplyResult {
  plan: Plan
  runId: number
  /** Steps executed by this call (a resumed run skips the ones done before). */
  executed: number
}

export type Progress = (p: { done: number; total: number; change: Change }) => void

type Action = keyof typeof CEDAR_ACTION

class DryRun extends Error {
  readonly value: unknown
  constructor(value: unknown) {
    super('dry run')
    this.value = value
  }
}

const conflict = (detail: string) => problems.conflict(detail)

/** Plan, apply, destroy and verify the six isolation layers of every tenant. */
export class IsolationService {
  readonly #d: IsolationDeps
  readonly #alloc: Allocator

  constructor(deps: IsolationDeps) {
    this.#d = deps
    this.#alloc = new Allocator(deps.config.pools, deps.config.quarantine)
  }

  // --- specs ---------------------------------------------------------------------------------

  /** Stores the spec as the tenant's next version (unless it equals the latest). */
  async putSpec(caller: Caller, tenant: string, input: string | unknown) {
    checkName(tenant)
    await this.#authorize(caller, 'PutTenantSpec', tenant)
    const spec = readSpec(input, tenant)
    return this.#d.db.transaction((tx) => this.#storeSpec(tx, caller, spec))
  }

  async getSpec(caller: Caller, tenant: string, version?: number): Promise<SpecRecord> {
    checkName(tenant)
    await this.#authorize(caller, 'ReadTenantSpec', tenant)
    const rec = await loadSpec(this.#d.db, tenant, version)
    if (!rec)
      throw problems.notFound(`Tenant ${tenant} has no spec${version ? ` version ${version}` : ''}`)
    return rec
  }

  async #storeSpec(tx: Transaction, caller: Caller, spec: TenantSpec) {
    const hash = specHash(spec)
    // The tenant row serializes versions of one tenant.
    await this.#lockTenant(tx, spec.tenant, spec.fabric)
    const latest = await loadSpec(tx, spec.tenant)
    if (latest?.hash === hash) return { version: latest.version, hash, created: false }
    const version = (latest?.version ?? 0) + 1
    const record = { tenant: spec.tenant, version, hash, spec, createdAt: this.#now() }
    await insertSpec(tx, record, caller.actor.id)
    await this.#event(tx, caller, 'isolation.spec', 'PutTenantSpec', spec.tenant, 'success', {
      specVersion: version,
      specHash: hash,
    })
    return { version, hash, created: true }
  }

  // --- plan ----------------------------------------------------------------------------------

  /**
   * What an apply would change, per layer, without changing anything: allocations are made in a
   * transaction that is rolled back, so new numbers are a prediction (an apply takes the values
   * free at that moment, and its plan hash says whether anything differs).
   */
  async plan(
    caller: Caller,
    tenant: string,
    opts: { spec?: string | unknown } = {},
  ): Promise<Plan> {
    checkName(tenant)
    await this.#authorize(caller, 'PlanTenant', tenant)
    const draft = opts.spec === undefined ? undefined : readSpec(opts.spec, tenant)
    return this.#dryRun((tx) => this.#planApply(tx, tenant, draft))
  }

  async planDestroy(caller: Caller, tenant: string): Promise<Plan> {
    checkName(tenant)
    await this.#authorize(caller, 'PlanTenant', tenant)
    return this.#planDestroy(tenant)
  }

  async #dryRun<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    try {
      await this.#d.db.transaction(async (tx) => {
        throw new DryRun(await fn(tx))
      })
    } catch (err) {
      if (err instanceof DryRun) return err.value as T
      throw err
    }
    throw new Error('unreachable')
  }

  /** Allocates and renders the latest spec (or a draft, as the version it would become). */
  async #planApply(tx: Transaction, tenant: string, draft?: TenantSpec): Promise<Plan> {
    let rec = await loadSpec(tx, tenant)
    if (draft) {
      const hash = specHash(draft)
      if (rec?.hash !== hash)
        rec = {
          tenant,
          version: (rec?.version ?? 0) + 1,
          hash,
          spec: draft,
          createdAt: this.#now(),
        }
    }
    if (!rec) throw problems.notFound(`Tenant ${tenant} has no spec; give one with --spec FILE`)
    await this.#lockTenant(tx, tenant, rec.spec.fabric)
    const resources = await allocate(
      tx,
      this.#alloc,
      rec.spec,
      rec.version,
      this.#d.config.asn,
      this.#now(),
    )
    const desired = renderAll(rec.spec, resources)
    const changes = await this.#diff(tenant, desired)
    return makePlan(tenant, 'apply', rec.version, rec.hash, resources, changes)
  }

  async #planDestroy(tenant: string): Promise<Plan> {
    const changes = await this.#diff(tenant, [])
    return makePlan(tenant, 'destroy', null, null, null, changes)
  }

  async #diff(tenant: string, desired: readonly DesiredObject[]): Promise<Change[]> {
    const changes: Change[] = []
    for (const name of DRIVERS) {
      const driver = this.#d.drivers[name]
      const mine = desired.filter((o) => o.driver === name)
      changes.push(...driver.plan(mine, await driver.observe(tenant, mine)))
    }
    return changes
  }

  // --- apply / destroy -----------------------------------------------------------------------

  /**
   * Makes the tenant's latest spec (or `spec`, stored first as a new version, or an earlier
   * `version`, re-stored as the newest to roll back) real on every layer. Allocation, the plan,
   * its steps and the audit event commit in one transaction; the steps then run one by one and
   * each is recorded when done, so an apply interrupted by a crash is finished by the next one.
   */
  async apply(
    caller: Caller,
    tenant: string,
    opts: {
      spec?: string | unknown
      version?: number
      planHash?: string
      onProgress?: Progress
    } = {},
  ): Promise<ApplyResult> {
    checkName(tenant)
    await this.#authorize(caller, 'ApplyTenant', tenant)
    let spec: TenantSpec | undefined
    if (opts.spec !== undefined) spec = readSpec(opts.spec, tenant)
    else if (opts.version !== undefined) {
      const old = await loadSpec(this.#d.db, tenant, opts.version)
      if (!old) throw problems.notFound(`Tenant ${tenant} has no spec version ${opts.version}`)
      spec = old.spec
    }
    const { plan, runId } = await this.#d.db.transaction(async (tx) => {
      if (spec) await this.#storeSpec(tx, caller, spec)
      const plan = await this.#planApply(tx, tenant)
      if (opts.planHash && opts.planHash !== plan.hash)
        throw conflict(`The plan changed since it was shown (now ${plan.hash}); plan again`)
      await this.#takeOver(tx, tenant)
      const runId = await this.#startRun(tx, caller, plan)
      await tx.query(
        `UPDATE isolation.tenants SET fabric = $2, state = 'active', desired_version = $3,
           resources = $4, plan_hash = $5, updated_at = $6 WHERE tenant = $1`,
        [
          tenant,
          plan.resources!.fabric,
          plan.specVersion,
          plan.resources as unknown as Record<string, unknown>,
          plan.hash,
          this.#now(),
        ],
      )
      await this.#event(tx, caller, 'isolation.apply', 'ApplyTenant', tenant, 'success', {
        planHash: plan.hash,
        specVersion: plan.specVersion,
        runId,
        ...plan.summary,
      })
      return { plan, runId }
    })
    const executed = await this.#execute(
      caller,
      runId,
      tenant,
      plan.hash,
      'ApplyTenant',
      opts.onProgress,
    )
    return { plan, runId, executed }
  }

  /** Removes every artifact of the tenant and puts its numbers and names into quarantine. */
  async destroy(caller: Caller, tenant: string, opts: { onProgress?: Progress } = {}) {
    checkName(tenant)
    await this.#authorize(caller, 'DestroyTenant', tenant)
    const { plan, runId } = await this.#d.db.transaction(async (tx) => {
      const row = await tx.query<{ state: string }>(
        'SELECT state FROM isolation.tenants WHERE tenant = $1 FOR UPDATE',
        [tenant],
      )
      if (!row.rows[0]) throw problems.notFound(`Tenant ${tenant} has no isolation state`)
      await this.#takeOver(tx, tenant)
      const plan = await this.#planDestroy(tenant)
      const runId = await this.#startRun(tx, caller, plan)
      await this.#alloc.releaseExcept(
        tx,
        tenant,
        { numbers: new Set(), claims: new Set() },
        this.#now(),
      )
      await tx.query(
        `UPDATE isolation.tenants SET state = 'destroyed', desired_version = NULL, resources = NULL,
           plan_hash = $2, updated_at = $3 WHERE tenant = $1`,
        [tenant, plan.hash, this.#now()],
      )
      await this.#event(tx, caller, 'isolation.destroy', 'DestroyTenant', tenant, 'success', {
        planHash: plan.hash,
        runId,
        ...plan.summary,
      })
      return { plan, runId }
    })
    const executed = await this.#execute(
      caller,
      runId,
      tenant,
      plan.hash,
      'DestroyTenant',
      opts.onProgress,
    )
    return { plan, runId, executed }
  }

  /** Locks (creating if needed) the tenant row: one plan/apply/destroy per tenant at a time. */
  async #lockTenant(tx: Transaction, tenant: string, fabric: string) {
    await tx.query(
      `INSERT INTO isolation.tenants (tenant, fabric, state, updated_at) VALUES ($1, $2, 'active', $3)
       ON CONFLICT (tenant) DO NOTHING`,
      [tenant, fabric, this.#now()],
    )
    await tx.query('SELECT tenant FROM isolation.tenants WHERE tenant = $1 FOR UPDATE', [tenant])
  }

  /** An unfinished run whose lease ran out (its process died) is superseded by this one. */
  async #takeOver(tx: Transaction, tenant: string) {
    const running = await tx.query<{ id: number; lease_until: Date }>(
      `SELECT id, lease_until FROM isolation.runs WHERE tenant = $1 AND status = 'running' FOR UPDATE`,
      [tenant],
    )
    const run = running.rows[0]
    if (!run) return
    if (new Date(run.lease_until).getTime() > this.#now().getTime())
      throw conflict(
        `An apply or destroy of tenant ${tenant} is in progress (run ${run.id}); retry when it ends`,
      )
    await tx.query(
      `UPDATE isolation.runs SET status = 'superseded', finished_at = $2 WHERE id = $1`,
      [run.id, this.#now()],
    )
  }

  async #startRun(tx: Transaction, caller: Caller, plan: Plan): Promise<number> {
    const now = this.#now()
    const res = await tx.query<{ id: number }>(
      `INSERT INTO isolation.runs (tenant, operation, spec_version, plan_hash, status, lease_until, started_at, actor)
       VALUES ($1, $2, $3, $4, 'running', $5, $6, $7) RETURNING id`,
      [
        plan.tenant,
        plan.operation,
        plan.specVersion,
        plan.hash,
        new Date(now.getTime() + this.#d.config.applyLease),
        now,
        caller.actor.id,
      ],
    )
    const id = res.rows[0]!.id
    if (plan.changes.length > 0)
      await tx.query(
        `INSERT INTO isolation.run_steps (run_id, seq, layer, object, action, content_hash)
         SELECT $1, s.seq, s.layer, s.driver || ':' || s.object, s.action, s.hash
         FROM jsonb_to_recordset($2::jsonb) AS s(seq int, layer text, driver text, object text, action text, hash text)`,
        [id, JSON.stringify(plan.changes.map((c, seq) => ({ ...c, seq })))],
      )
    return id
  }

  /** Runs the steps not yet done, recording each; a failure marks the run failed (and audits it). */
  async #execute(
    caller: Caller,
    runId: number,
    tenant: string,
    planHash: string,
    action: Action,
    onProgress?: Progress,
  ): Promise<number> {
    const { db } = this.#d
    const steps = await db.query<{
      seq: number
      object: string
      action: Change['action']
      done_at: Date | null
    }>(
      'SELECT seq, object, action, done_at FROM isolation.run_steps WHERE run_id = $1 ORDER BY seq',
      [runId],
    )
    const spec = await this.#currentDesired(tenant)
    let done = steps.rows.filter((s) => s.done_at).length
    let executed = 0
    for (const step of steps.rows) {
      if (step.done_at) continue
      const sep = step.object.indexOf(':')
      const driverName = step.object.slice(0, sep) as DriverName
      const id = step.object.slice(sep + 1)
      const driver = this.#d.drivers[driverName]
      const change: Change = {
        driver: driverName,
        layer: LAYER_OF[driverName],
        object: id,
        action: step.action,
      }
      try {
        if (step.action === 'remove') await driver.delete(tenant, id)
        else {
          const obj = spec.find((o) => o.driver === driverName && o.id === id)
          if (!obj) throw new Error(`step ${step.seq}: ${step.object} is no longer desired`)
          await driver.apply(tenant, obj)
        }
      } catch (err) {
        await db.transaction(async (tx) => {
          await tx.query(
            `UPDATE isolation.runs SET status = 'failed', finished_at = $2 WHERE id = $1`,
            [runId, this.#now()],
          )
          await this.#event(
            tx,
            caller,
            `isolation.${action === 'ApplyTenant' ? 'apply' : 'destroy'}.failed`,
            action,
            tenant,
            'error',
            {
              planHash,
              runId,
              step: step.seq,
              object: step.object,
            },
          )
        })
        throw new Problem({
          status: 502,
          title: 'Isolation step failed',
          type: `${PROBLEM_BASE}isolation-step-failed`,
          detail: `Step ${step.seq} (${step.action} ${step.object}) failed: ${safeMessage(err)}; apply again to resume`,
          extensions: { runId, step: step.seq },
        })
      }
      const now = this.#now()
      // Progress need not wait for the disk: losing the last records in a crash only re-runs
      // idempotent steps, while a flush per step would bound applies by fsync latency.
      await db.transaction(
        (tx) =>
          tx.query(
            `WITH s AS (UPDATE isolation.run_steps SET done_at = $3 WHERE run_id = $1 AND seq = $2)
             UPDATE isolation.runs SET lease_until = $4 WHERE id = $1`,
            [runId, step.seq, now, new Date(now.getTime() + this.#d.config.applyLease)],
          ),
        { settings: { synchronous_commit: 'off' } },
      )
      executed++
      done++
      onProgress?.({ done, total: steps.rows.length, change })
    }
    await db.transaction(async (tx) => {
      await tx.query(
        `UPDATE isolation.runs SET status = 'done', finished_at = $2 WHERE id = $1 AND status = 'running'`,
        [runId, this.#now()],
      )
      await this.#event(
        tx,
        caller,
        `isolation.${action === 'ApplyTenant' ? 'apply' : 'destroy'}.completed`,
        action,
        tenant,
        'success',
        {
          planHash,
          runId,
          executed,
        },
      )
    })
    return executed
  }

  /** The artifacts the tenant's recorded desired state renders to (none once destroyed). */
  async #currentDesired(tenant: string): Promise<DesiredObject[]> {
    const res = await this.#d.db.query<{ spec: TenantSpec; resources: Resources }>(
      `SELECT s.spec, t.resources FROM isolation.tenants t
       JOIN isolation.specs s ON s.tenant = t.tenant AND s.version = t.desired_version
       WHERE t.tenant = $1 AND t.state = 'active'`,
      [tenant],
    )
    const row = res.rows[0]
    return row ? renderAll(row.spec, row.resources) : []
  }

  // --- verify --------------------------------------------------------------------------------

  async verify(caller: Caller): Promise<VerifyReport> {
    await this.#authorize(caller, 'VerifyIsolation')
    return verifyAll(this.#d)
  }

  // --- plumbing ------------------------------------------------------------------------------

  #now() {
    return this.#d.clock.now()
  }

  /** Platform realm only, then the PDP; any failure to decide is a deny (fail closed). */
  async #authorize(caller: Caller, action: Action, tenant?: string) {
    let reason = 'only platform operators manage tenant isolation'
    let allowed = false
    if (caller.realm === 'platform') {
      try {
        const resource = specEntity(tenant ?? 'platform')
        const d = await this.#d.pdp.decide({
          principal: caller.principal,
          action: { type: 'Dflare::Action', id: CEDAR_ACTION[action] },
          resource: resource.uid,
          context: caller.context ?? {},
          entities: [resource],
        })
        allowed = d.decision === 'allow'
        reason = d.reason
      } catch {
        reason = 'the authorization service failed'
      }
    }
    if (allowed) return
    await this.#event(
      undefined,
      caller,
      'isolation.denied',
      action,
      tenant ?? 'platform',
      'denied',
      {},
    ).catch(() => {})
    throw problems.forbidden(reason)
  }

  async #event(
    tx: Transaction | undefined,
    caller: Caller,
    type: string,
    action: Action,
    tenant: string,
    outcome: 'success' | 'denied' | 'error',
    details: Record<string, unknown>,
  ) {
    await this.#d.events.record(
      {
        type,
        tenant: 'platform',
        actor: caller.actor,
        action: CEDAR_ACTION[action],
        resource: { type: 'TenantSpec', id: tenant },
        outcome,
        correlationId: caller.correlationId,
        details,
        time: this.#now(),
      },
      tx,
    )
  }
}

function makePlan(
  tenant: string,
  operation: Plan['operation'],
  specVersion: number | null,
  specHash: string | null,
  resources: Resources | null,
  changes: Change[],
): Plan {
  const hash = sha256(
    canonicalize({ tenant, operation, specVersion, specHash, resources, changes })!,
  )
  const count = (a: Change['action']) => changes.filter((c) => c.action === a).length
  return {
    tenant,
    operation,
    specVersion,
    hash,
    resources,
    changes,
    summary: { create: count('create'), change: count('change'), remove: count('remove') },
  }
}

function checkName(tenant: string) {
  if (!TENANT_NAME.test(tenant))
    throw problems.badRequest(`tenant: "${tenant}" is not a valid tenant name`, [
      { field: 'tenant', message: `must match ${TENANT_NAME}` },
    ])
}

/** Driver errors may quote endpoint responses; keep one short line and never more. */
function safeMessage(err: unknown) {
  if (err instanceof Problem) return err.detail ?? err.title
  return String((err as Error)?.message ?? err)
    .split('\n')[0]!
    .slice(0, 200)
}
