import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AuthorizationRequest, Decision, Pdp } from '../../src/authz/contract.ts'
import { ManualClock } from '../../src/core/clock.ts'
import { MemoryEventSink } from '../../src/core/events.ts'
import { createDrivers } from '../../src/isolation/drivers/index.ts'
import { isolationMigrations } from '../../src/isolation/migrations.ts'
import { DEFAULT_POOLS, type FabricPools } from '../../src/isolation/pools.ts'
import { type Caller, type IsolationConfig, IsolationService } from '../../src/isolation/service.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'

/** A PDP that allows what `allow` says and records every request. */
export class RecordingPdp implements Pdp {
  readonly requests: AuthorizationRequest[] = []
  allow: (r: AuthorizationRequest) => boolean = () => true
  async decide(r: AuthorizationRequest): Promise<Decision> {
    this.requests.push(r)
    const ok = this.allow(r)
    return {
      decision: ok ? 'allow' : 'deny',
      determining: [],
      errors: [],
      reason: ok ? 'allowed' : 'denied by test policy',
    }
  }
}

export const operator: Caller = {
  principal: { type: 'Dflare::User', id: 'op-1' },
  realm: 'platform',
  actor: { kind: 'user', id: 'op-1', realm: 'platform' },
}

export interface Harness {
  t: TestDatabase
  service: IsolationService
  clock: ManualClock
  events: MemoryEventSink
  pdp: RecordingPdp
  realms: Set<string>
  dir: string
  config: IsolationConfig
  close(): Promise<void>
}

export async function harness(
  opts: { pools?: Partial<FabricPools>; quarantine?: number } = {},
): Promise<Harness> {
  const t = await migratedDatabase([isolationMigrations])
  const dir = await mkdtemp(join(tmpdir(), 'dflare-iso-'))
  const clock = new ManualClock()
  const events = new MemoryEventSink()
  const pdp = new RecordingPdp()
  const realms = new Set<string>()
  const config: IsolationConfig = {
    pools: { default: { ...DEFAULT_POOLS, ...opts.pools } },
    quarantine: opts.quarantine ?? 3_600_000,
    asn: 65000,
    artifacts: dir,
    kubeconfig: undefined,
    sacctmgr: undefined,
    ufmUrl: undefined,
    ufmCredentials: undefined,
    applyLease: 60_000,
  }
  const service = new IsolationService({
    db: t.db,
    clock,
    events,
    pdp,
    realmExists: async (tenant) => realms.has(tenant),
    drivers: createDrivers(config),
    config,
  })
  return {
    t,
    service,
    clock,
    events,
    pdp,
    realms,
    dir,
    config,
    async close() {
      await t.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A complete spec for tenant `name`; `n` varies its networks, ports and names. */
export function specFor(name: string, n = 0, opts: { networks?: number } = {}) {
  const nets = opts.networks ?? 2
  const octet = (n % 250) + 1
  const third = Math.floor(n / 250)
  return {
    apiVersion: 'dflare.dev/v1',
    kind: 'TenantIsolation',
    tenant: name,
    networks: Array.from({ length: nets }, (_, i) => ({
      name: `net${i}`,
      cidr: `10.${octet}.${third * 8 + i}.0/24`,
    })),
    hostPorts: [
      {
        host: `${name}-gpu1`,
        network: 'net0',
        switch: `leaf${n % 4}`,
        port: `swp${n * 2 + 1}`,
        guid: guid(n * 2 + 1),
      },
      {
        host: `${name}-gpu2`,
        network: 'net0',
        switch: `leaf${(n + 1) % 4}`,
        port: `swp${n * 2 + 2}`,
        guid: guid(n * 2 + 2),
      },
    ],
    gpuQuota: 16,
    infiniband: { servicePorts: ['0x0002c90300000001'] },
    storage: {
      servicePorts: ['0x0002c90300000002'],
      exports: [
        { name: 'datasets', path: `/exports/${name}/datasets`, access: 'ro', networks: ['net0'] },
        {
          name: 'scratch',
          path: `/exports/${name}/scratch`,
          access: 'rw',
          hosts: [`${name}-gpu1`],
          identities: ['group:ml'],
        },
      ],
    },
    kubernetes: {
      clusters: ['k8s-a'],
      namespaces: [{ name: 'train', gpus: 8, cpu: '64', memory: '256Gi' }],
      groups: [
        { group: 'admins', role: 'admin' },
        { group: 'ml', role: 'edit' },
      ],
    },
    slurm: { clusters: ['hpc-a'], nodes: [`${name}-node1`], users: [`u${n}`], gpus: 8 },
    ingress: [
      { cidr: '203.0.113.0/24', protocol: 'tcp', ports: [443, '8000-8100'] },
      { cidr: '198.51.100.7/32', protocol: 'icmp' },
    ],
  }
}

const guid = (i: number) => `0x0002c9031${i.toString(16).padStart(7, '0')}`
