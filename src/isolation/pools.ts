import { SettingValueError } from '../core/config/index.ts'

/**
 * Number pools the allocators draw from, per fabric/site. VNIs for L2 and L3 share one pool (both
 * live in one VXLAN VNI space); compute and storage PKeys share one pool (one IB subnet manager).
 */
export const POOL_NAMES = ['vlan', 'vni', 'vrf', 'pkey'] as const
export type PoolName = (typeof POOL_NAMES)[number]

export type Range = { lo: number; hi: number }
export type FabricPools = Record<PoolName, Range>
export type PoolConfig = Readonly<Record<string, FabricPools>>

/** Hard limits of each number space. */
const LIMITS: Record<PoolName, Range> = {
  // 1 is the default VLAN; 4095 is reserved (802.1Q).
  vlan: { lo: 2, hi: 4094 },
  vni: { lo: 1, hi: 16_777_215 },
  // The VRF id is also the route distinguisher's and route target's assigned number (2 bytes with a 4-byte ASN).
  vrf: { lo: 1, hi: 65_535 },
  // 0x7FFF is the default partition and 0x0000 is invalid; never allocate either.
  pkey: { lo: 0x0001, hi: 0x7ffe },
}

export const DEFAULT_POOLS: FabricPools = {
  vlan: { lo: 100, hi: 3999 },
  vni: { lo: 10_000, hi: 16_000_000 },
  vrf: { lo: 1001, hi: 65_000 },
  pkey: { lo: 0x0002, hi: 0x7ffe },
}

function range(name: string, pool: PoolName, raw: unknown): Range {
  const text = typeof raw === 'string' ? raw : Array.isArray(raw) ? raw.join('-') : ''
  const m = /^(0x[0-9a-fA-F]+|\d+)\s*-\s*(0x[0-9a-fA-F]+|\d+)$/.exec(text)
  if (!m) throw new SettingValueError(`fabric ${name}: pool ${pool} must be "LO-HI"`)
  const lo = Number(m[1])
  const hi = Number(m[2])
  const lim = LIMITS[pool]
  if (lo > hi || lo < lim.lo || hi > lim.hi)
    throw new SettingValueError(
      `fabric ${name}: pool ${pool} must lie within ${lim.lo}-${lim.hi} with LO <= HI`,
    )
  return { lo, hi }
}

/**
 * Parses the pool setting: JSON `{"FABRIC": {"vlan": "100-3999", "pkey": "0x0002-0x7ffe"}}`.
 * Pools left out take the defaults; the `default` fabric always exists.
 */
export function parsePools(raw: unknown): PoolConfig {
  let doc: unknown = raw
  if (typeof raw === 'string') {
    try {
      doc = JSON.parse(raw)
    } catch {
      throw new SettingValueError('is not JSON')
    }
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new SettingValueError('must be a JSON object of fabrics')
  const out: Record<string, FabricPools> = { default: DEFAULT_POOLS }
  for (const [fabric, pools] of Object.entries(doc)) {
    if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(fabric))
      throw new SettingValueError(`fabric name ${JSON.stringify(fabric)} has the wrong form`)
    if (!pools || typeof pools !== 'object' || Array.isArray(pools))
      throw new SettingValueError(`fabric ${fabric} must map pool names to ranges`)
    const f: FabricPools = { ...DEFAULT_POOLS }
    for (const [pool, r] of Object.entries(pools)) {
      if (!(POOL_NAMES as readonly string[]).includes(pool))
        throw new SettingValueError(`fabric ${fabric}: unknown pool ${pool}`)
      f[pool as PoolName] = range(fabric, pool as PoolName, r)
    }
    out[fabric] = f
  }
  return out
}
