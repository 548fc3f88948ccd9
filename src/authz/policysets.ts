/**
 * Which compiled policies apply to a tenant: the global part (platform guard rails plus
 * platform-wide role bindings) and the tenant part (its role-binding policies plus its active
 * custom policies). Both are compiled once and rebuilt only when a change notice names them.
 */
import type { EntityCache } from './cache.ts'
import {
  type BindingGroup,
  bindingPolicy,
  isPlatformWide,
  PLATFORM_TENANT,
  platformPolicies,
} from './catalog.ts'
import { CompiledPolicySet, type PolicySource } from './cedar/policyset.ts'

export interface TenantPolicySource {
  /** The tenant's active custom policies (empty when it has none). */
  active(tenant: string): Promise<PolicySource[]>
}

export interface TenantSets {
  global: CompiledPolicySet
  tenant: CompiledPolicySet
}

export class PolicySets {
  readonly #cache: EntityCache
  readonly #custom: TenantPolicySource
  #global: Promise<CompiledPolicySet> | undefined
  readonly #tenants = new Map<string, Promise<CompiledPolicySet>>()

  constructor(cache: EntityCache, custom: TenantPolicySource) {
    this.#cache = cache
    this.#custom = custom
    cache.onChange((notice) => {
      if (notice === 'all') return this.invalidateAll()
      for (const t of [...(notice.bindingTenants ?? []), ...(notice.policyTenants ?? [])]) {
        this.#tenants.delete(t)
        if (t === PLATFORM_TENANT) this.#global = undefined
      }
    })
  }

  invalidateAll() {
    this.#global = undefined
    this.#tenants.clear()
  }

  async for(tenant: string, useCache = true): Promise<TenantSets> {
    if (!useCache)
      return {
        global: await this.#buildGlobal(false),
        tenant: await this.#buildTenant(tenant, false),
      }
    this.#global ??= this.#buildGlobal(true).catch((err) => {
      this.#global = undefined
      throw err
    })
    let t = this.#tenants.get(tenant)
    if (!t) {
      t = this.#buildTenant(tenant, true).catch((err) => {
        this.#tenants.delete(tenant)
        throw err
      })
      this.#tenants.set(tenant, t)
    }
    return { global: await this.#global, tenant: await t }
  }

  async #buildGlobal(useCache: boolean) {
    const groups = await this.#cache.bindingGroups(PLATFORM_TENANT, useCache)
    return new CompiledPolicySet([
      ...platformPolicies(),
      ...groups.filter(isPlatformWide).map(bindingPolicy),
    ])
  }

  /** The tenant's set with `custom` in place of its active custom policies (dry-runs). */
  async withCustom(tenant: string, custom: PolicySource[]): Promise<CompiledPolicySet> {
    const groups = await this.#cache.bindingGroups(tenant)
    return new CompiledPolicySet([
      ...groups.filter((g) => !isPlatformWide(g)).map(bindingPolicy),
      ...custom,
    ])
  }

  async #buildTenant(tenant: string, useCache: boolean) {
    const groups: BindingGroup[] = await this.#cache.bindingGroups(tenant, useCache)
    const custom = await this.#custom.active(tenant)
    return new CompiledPolicySet([
      ...groups.filter((g) => !isPlatformWide(g)).map(bindingPolicy),
      ...custom,
    ])
  }
}
