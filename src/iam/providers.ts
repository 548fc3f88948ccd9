import type { IncomingMessage, ServerResponse } from 'node:http'
import type Provider from 'oidc-provider'
import type { ProviderDeps } from './provider.ts'

export interface RealmProvider {
  provider: Provider
  handle: (req: IncomingMessage, res: ServerResponse) => void
}

/**
 * One oidc-provider instance per realm, built on first use and kept in a bounded LRU map, so
 * thousands of realms cost only the ones in active use. Concurrent first requests share one
 * build. `evict` drops an instance after its keys or settings change.
 */
export class ProviderCache {
  readonly #deps: ProviderDeps
  readonly #max: number
  readonly #entries = new Map<string, Promise<RealmProvider | undefined>>()
  readonly #beforeBuild: (realm: string) => Promise<void>

  constructor(deps: ProviderDeps, max: number, beforeBuild: (realm: string) => Promise<void>) {
    this.#deps = deps
    this.#max = max
    this.#beforeBuild = beforeBuild
  }

  get(realm: string): Promise<RealmProvider | undefined> {
    const hit = this.#entries.get(realm)
    if (hit) {
      this.#entries.delete(realm)
      this.#entries.set(realm, hit)
      return hit
    }
    const built = this.#build(realm)
    this.#entries.set(realm, built)
    built.then(
      (p) => {
        if (!p) this.#entries.delete(realm)
      },
      () => this.#entries.delete(realm),
    )
    while (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value!)
    return built
  }

  async #build(realm: string): Promise<RealmProvider | undefined> {
    const { rows } = await this.#deps.db.query<{
      id: string
      access_token_ttl: number | null
      disabled: boolean
    }>('SELECT id, access_token_ttl, disabled FROM iam.realms WHERE id = $1', [realm])
    const row = rows[0]
    if (!row || row.disabled) return undefined
    await this.#beforeBuild(realm)
    // oidc-provider loads on first use of any realm, not at process start.
    const { buildProvider } = await import('./provider.ts')
    const provider = await buildProvider(this.#deps, row)
    return { provider, handle: provider.callback() }
  }

  evict(realm: string) {
    this.#entries.delete(realm)
  }

  get size() {
    return this.#entries.size
  }
}
