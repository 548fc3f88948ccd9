import type { KubernetesObject, KubernetesObjectApi } from '@kubernetes/client-node'
import YAML from 'yaml'
import { type Change, type DesiredObject, sha256 } from '../types.ts'
import type { FileDriver } from './files.ts'
import { type Driver, diff } from './types.ts'

const FIELD_MANAGER = 'dflare-isolation'

// The client library takes about a second to load: only processes with a kubeconfig pay for it.
const k8s = () => import('@kubernetes/client-node')

/** True when every field set in `want` has the same value in `have` (the API server adds fields). */
export function contains(have: unknown, want: unknown): boolean {
  if (want === null || typeof want !== 'object') return have === want
  if (Array.isArray(want))
    return (
      Array.isArray(have) &&
      have.length === want.length &&
      want.every((w, i) => contains(have[i], w))
    )
  if (!have || typeof have !== 'object') return false
  const h = have as Record<string, unknown>
  // client-node's models rename fields that are reserved words (LimitRange `default` -> `_default`).
  return Object.entries(want).every(([k, v]) => contains(k in h ? h[k] : h[`_${k}`], v))
}

/**
 * client-node serializes request bodies through its generated models, whose properties for the
 * reserved words `default` and `from` are `_default` and `_from`: a plain object's `default` or
 * `from` would be silently dropped, and a NetworkPolicy rule without `from` allows every source.
 * The Kubernetes driver test applies to a recording fake of the API server and checks nothing
 * was lost.
 */
export function toModelShape(o: KubernetesObject): KubernetesObject {
  const copy = structuredClone(o) as KubernetesObject & {
    spec?: { limits?: Record<string, unknown>[]; ingress?: Record<string, unknown>[] }
  }
  const rename = (items: Record<string, unknown>[] | undefined, key: string) => {
    for (const item of items ?? [])
      if (key in item) {
        item[`_${key}`] = item[key]
        delete item[key]
      }
  }
  if (o.kind === 'LimitRange') rename(copy.spec?.limits, 'default')
  if (o.kind === 'NetworkPolicy') rename(copy.spec?.ingress, 'from')
  return copy
}

const objectsOf = (o: DesiredObject) =>
  YAML.parseAllDocuments(o.content).map((d) => d.toJSON() as KubernetesObject)

/**
 * Kubernetes through server-side apply (field manager `dflare-isolation`), one kubeconfig context
 * per cluster named as in the tenant spec. Tenant namespaces carry `dflare.dev/tenant`, which is
 * how objects left behind (a cluster dropped from the spec) are found and removed. The applied
 * manifest is also kept in the artifact folder, as a record of what was applied.
 */
export class KubernetesDriver implements Driver {
  readonly name = 'kubernetes' as const
  readonly #kubeconfig: string
  readonly #files: FileDriver
  readonly #clients = new Map<string, KubernetesObjectApi>()

  constructor(kubeconfig: string, files: FileDriver) {
    this.#kubeconfig = kubeconfig
    this.#files = files
  }

  async #client(cluster: string) {
    let c = this.#clients.get(cluster)
    if (!c) {
      const { KubeConfig, KubernetesObjectApi } = await k8s()
      const kc = new KubeConfig()
      kc.loadFromFile(this.#kubeconfig)
      if (!kc.getContextObject(cluster))
        throw new Error(`kubeconfig has no context named after cluster ${cluster}`)
      kc.setCurrentContext(cluster)
      c = KubernetesObjectApi.makeApiClient(kc)
      this.#clients.set(cluster, c)
    }
    return c
  }

  async #clusters(): Promise<string[]> {
    const { KubeConfig } = await k8s()
    const kc = new KubeConfig()
    kc.loadFromFile(this.#kubeconfig)
    return kc.getContexts().map((c) => c.name)
  }

  async #tenantNamespaces(cluster: string, tenant: string) {
    const list = await (await this.#client(cluster)).list(
      'v1',
      'Namespace',
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      `dflare.dev/tenant=${tenant}`,
    )
    return list.items.map((n) => n.metadata!.name!)
  }

  async observe(tenant: string, desired: readonly DesiredObject[]): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for (const cluster of await this.#clusters()) {
      const id = `${cluster}.yaml`
      const want = desired.find((o) => o.id === id)
      const present = await this.#tenantNamespaces(cluster, tenant)
      if (!want) {
        if (present.length > 0) out.set(id, `observed:${present.sort().join(',')}`)
        continue
      }
      const objects = objectsOf(want)
      const wantedNs = new Set(
        objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata!.name!),
      )
      let same = present.every((n) => wantedNs.has(n))
      let any = present.length > 0
      for (const o of objects) {
        if (!same) break
        try {
          same = contains(await (await this.#client(cluster)).read(o as never), o)
          any = true
        } catch (err) {
          if ((err as { code?: number }).code !== 404) throw err
          same = false
        }
      }
      if (any) out.set(id, same ? sha256(want.content) : 'drifted')
    }
    return out
  }

  plan(desired: readonly DesiredObject[], observed: ReadonlyMap<string, string>): Change[] {
    return diff(this.name, desired, observed)
  }

  async apply(tenant: string, object: DesiredObject) {
    const client = await this.#client(object.id.replace(/\.yaml$/, ''))
    const objects = objectsOf(object)
    const wanted = new Set(
      objects.filter((o) => o.kind === 'Namespace').map((o) => o.metadata!.name!),
    )
    for (const o of objects)
      await client.patch(
        toModelShape(o),
        undefined,
        undefined,
        FIELD_MANAGER,
        true,
        (await k8s()).PatchStrategy.ServerSideApply,
      )
    // Namespaces of the tenant no longer in the spec go, with everything in them.
    for (const ns of await this.#tenantNamespaces(object.id.replace(/\.yaml$/, ''), tenant))
      if (!wanted.has(ns))
        await client.delete({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
    await this.#files.apply(tenant, object)
  }

  async delete(tenant: string, id: string) {
    const cluster = id.replace(/\.yaml$/, '')
    const client = await this.#client(cluster)
    for (const ns of await this.#tenantNamespaces(cluster, tenant))
      await client.delete({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })
    await this.#files.delete(tenant, id)
  }
}
