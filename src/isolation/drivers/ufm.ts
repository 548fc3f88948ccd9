import { readFile } from 'node:fs/promises'
import type { UfmCall } from '../render/infiniband.ts'
import type { Change, DesiredObject } from '../types.ts'
import type { FileDriver } from './files.ts'
import { type Driver, diff } from './types.ts'

type Membership = 'full' | 'limited'
/** pkey -> guid (no 0x, lowercase) -> membership */
type PkeyState = Map<string, Map<string, Membership>>

function wanted(content: string): PkeyState {
  const state: PkeyState = new Map()
  for (const call of JSON.parse(content) as UfmCall[]) {
    const body = call.body as { pkey: string; guids: string[]; membership: Membership }
    const m = state.get(body.pkey) ?? new Map()
    for (const g of body.guids) m.set(g.toLowerCase(), body.membership)
    state.set(body.pkey, m)
  }
  return state
}

const same = (a: Map<string, Membership>, b: Map<string, Membership>) =>
  a.size === b.size && [...a].every(([g, m]) => b.get(g) === m)

/**
 * InfiniBand partitions through the NVIDIA UFM REST API (`/ufmRest/resources/pkeys`), driven by
 * the rendered ufm.json calls; partitions.conf stays an artifact for OpenSM-managed subnets.
 * A partition whose members differ is recreated exactly (UFM's POST only adds members).
 */
export class UfmDriver implements Driver {
  readonly name = 'infiniband' as const
  readonly #base: URL
  readonly #auth: string
  readonly #files: FileDriver

  constructor(url: URL, credentials: string, files: FileDriver) {
    this.#base = url
    this.#auth = `Basic ${Buffer.from(credentials).toString('base64')}`
    this.#files = files
  }

  async #call(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(new URL(path, this.#base), {
      method,
      headers: { authorization: this.#auth, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    })
    if (res.status === 404 && method === 'GET') return undefined
    // The response body may quote our request; report the status only.
    if (!res.ok) throw new Error(`UFM ${method} ${path} answered ${res.status}`)
    const text = await res.text()
    return text ? JSON.parse(text) : undefined
  }

  async #observed(pkey: string): Promise<Map<string, Membership> | undefined> {
    const r = (await this.#call('GET', `/ufmRest/resources/pkeys/${pkey}?guids_data=true`)) as
      | { guids?: { guid: string; membership: Membership }[] }
      | undefined
    if (!r) return undefined
    return new Map((r.guids ?? []).map((g) => [g.guid.toLowerCase(), g.membership]))
  }

  async #previous(tenant: string): Promise<PkeyState> {
    try {
      return wanted(await readFile(this.#files.path(tenant, 'ufm.json'), 'utf8'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
      throw err
    }
  }

  async observe(tenant: string, desired: readonly DesiredObject[]): Promise<Map<string, string>> {
    const out = await this.#files.observe(tenant)
    const want = desired.find((o) => o.id === 'ufm.json')
    if (!want) return out
    let match = true
    for (const [pkey, members] of wanted(want.content)) {
      const have = await this.#observed(pkey)
      if (!have || !same(have, members)) match = false
    }
    if (!match && out.has('ufm.json')) out.set('ufm.json', 'drifted-in-ufm')
    else if (match && !out.has('ufm.json')) out.set('ufm.json', 'artifact-missing')
    return out
  }

  plan(desired: readonly DesiredObject[], observed: ReadonlyMap<string, string>): Change[] {
    return diff(this.name, desired, observed)
  }

  async apply(tenant: string, object: DesiredObject) {
    if (object.id === 'ufm.json') {
      const want = wanted(object.content)
      for (const pkey of (await this.#previous(tenant)).keys())
        if (!want.has(pkey)) await this.#call('DELETE', `/ufmRest/resources/pkeys/${pkey}`)
      for (const [pkey, members] of want) {
        const have = await this.#observed(pkey)
        if (have && same(have, members)) continue
        if (have && [...have.keys()].some((g) => members.get(g) !== have.get(g)))
          await this.#call('DELETE', `/ufmRest/resources/pkeys/${pkey}`)
        for (const membership of ['full', 'limited'] as const) {
          const guids = [...members].filter(([, m]) => m === membership).map(([g]) => g)
          if (guids.length)
            await this.#call('POST', '/ufmRest/resources/pkeys', {
              pkey,
              guids,
              membership,
              index0: true,
              ip_over_ib: true,
            })
        }
      }
    }
    await this.#files.apply(tenant, object)
  }

  async delete(tenant: string, id: string) {
    if (id === 'ufm.json')
      for (const pkey of (await this.#previous(tenant)).keys())
        await this.#call('DELETE', `/ufmRest/resources/pkeys/${pkey}`)
    await this.#files.delete(tenant, id)
  }
}
