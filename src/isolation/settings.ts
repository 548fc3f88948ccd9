import { resolve } from 'node:path'
import {
  defineSettings,
  parse,
  type ResolvedSoFar,
  SettingValueError,
} from '../core/config/index.ts'
import { DEFAULT_POOLS, type PoolConfig, parsePools } from './pools.ts'

export const isolationSettings = defineSettings({
  pools: {
    env: 'DFLARE_ISOLATION_POOLS',
    key: 'isolation.pools',
    doc: 'Number pools per fabric/site as JSON, e.g. {"site-a":{"vlan":"100-1999","vni":"10000-99999","vrf":"1001-2000","pkey":"0x0002-0x3fff"}}; omitted pools take the defaults.',
    allowed: 'JSON object FABRIC -> {vlan, vni, vrf, pkey: "LO-HI"}',
    default: { default: DEFAULT_POOLS } as PoolConfig,
    defaultDoc: 'default: vlan 100-3999, vni 10000-16000000, vrf 1001-65000, pkey 0x0002-0x7ffe',
    parse: parsePools,
  },
  quarantine: {
    env: 'DFLARE_ISOLATION_QUARANTINE',
    key: 'isolation.quarantine',
    doc: 'How long a released VLAN/VNI/VRF/PKey or name stays unusable by any other tenant.',
    allowed: 'duration 0s..365d (e.g. 7d)',
    default: 7 * 86_400_000,
    parse: parse.duration(0, 365 * 86_400_000),
  },
  asn: {
    env: 'DFLARE_ISOLATION_ASN',
    key: 'isolation.asn',
    doc: 'BGP AS number of the EVPN fabric; route distinguishers and route targets are ASN:VRF-ID.',
    allowed: 'integer 1..4294967294',
    default: 65000,
    parse: parse.int(1, 4_294_967_294),
  },
  artifacts: {
    env: 'DFLARE_ISOLATION_ARTIFACTS',
    key: 'isolation.artifacts',
    doc: 'Directory where drivers without an endpoint write each tenant’s rendered artifacts.',
    allowed: 'a directory path',
    default: (r: ResolvedSoFar) => resolve(String(r.home), 'isolation'),
    defaultDoc: '$DFLARE_HOME/isolation',
    parse: parse.path(),
  },
  kubeconfig: {
    env: 'DFLARE_ISOLATION_KUBECONFIG',
    key: 'isolation.kubeconfig',
    doc: 'Kubeconfig whose contexts are named after the tenant spec’s clusters; when set, manifests are server-side applied.',
    allowed: 'a file path, or empty for artifacts only',
    default: undefined as string | undefined,
    defaultDoc: '(artifacts only)',
    parse: (raw: unknown) => parse.optionalString()(raw) && parse.path()(raw),
  },
  sacctmgr: {
    env: 'DFLARE_ISOLATION_SACCTMGR',
    key: 'isolation.sacctmgr',
    doc: 'Path of the sacctmgr binary; when set, Slurm accounts, QOS and users are applied with it.',
    allowed: 'a file path, or empty for artifacts only',
    default: undefined as string | undefined,
    defaultDoc: '(artifacts only)',
    parse: (raw: unknown) => parse.optionalString()(raw) && parse.path()(raw),
  },
  ufmUrl: {
    env: 'DFLARE_ISOLATION_UFM_URL',
    key: 'isolation.ufm.url',
    doc: 'NVIDIA UFM base URL; when set (with credentials), InfiniBand partitions are applied through its REST API.',
    allowed: 'https://HOST[:PORT], or empty for artifacts only',
    default: undefined as URL | undefined,
    defaultDoc: '(artifacts only)',
    parse: parse.optionalUrl(['https:']),
  },
  ufmCredentials: {
    env: 'DFLARE_ISOLATION_UFM_CREDENTIALS',
    key: 'isolation.ufm.credentials',
    doc: 'UFM REST user and password as USER:PASSWORD (HTTP Basic).',
    allowed: 'USER:PASSWORD',
    default: undefined as string | undefined,
    defaultDoc: '(none)',
    parse: (raw: unknown) => {
      const v = parse.optionalString()(raw)
      if (v !== undefined && !/^[^:\s]+:\S+$/.test(v))
        throw new SettingValueError('must be USER:PASSWORD')
      return v
    },
    secret: true,
  },
  applyLease: {
    env: 'DFLARE_ISOLATION_APPLY_LEASE',
    key: 'isolation.applyLease',
    doc: 'How long an apply holds its tenant before another apply may resume it (after a crash).',
    allowed: 'duration 10s..1h',
    default: 120_000,
    parse: parse.duration(10_000, 3_600_000),
  },
})
