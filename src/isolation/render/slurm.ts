import type { Resources } from '../resources.ts'
import type { TenantSpec } from '../spec.ts'
import type { DesiredObject } from '../types.ts'

/** sacctmgr invocations as argument vectors (no shell, so no quoting issues). */
export function sacctmgrCommands(spec: TenantSpec, s: Resources['slurm'][number]): string[][] {
  const gpus = `gres/gpu=${spec.slurm.gpus}`
  const cmds: string[][] = [
    ['-i', 'add', 'qos', s.qos, `GrpTRES=${gpus}`, `MaxTRESPerJob=${gpus}`, 'Flags=DenyOnLimit'],
    [
      '-i',
      'add',
      'account',
      s.account,
      `Cluster=${s.cluster}`,
      `Description=dflare-tenant-${spec.tenant}`,
      `Organization=${spec.tenant}`,
      `QosLevel=${s.qos}`,
      `DefaultQOS=${s.qos}`,
    ],
  ]
  for (const u of spec.slurm.users)
    cmds.push([
      '-i',
      'add',
      'user',
      u,
      `Account=${s.account}`,
      `Cluster=${s.cluster}`,
      `DefaultAccount=${s.account}`,
      `QosLevel=${s.qos}`,
      `DefaultQOS=${s.qos}`,
    ])
  return cmds
}

export function renderPartitionLine(spec: TenantSpec, s: Resources['slurm'][number]): string {
  return `PartitionName=${s.partition} Nodes=${spec.slurm.nodes.join(',')} AllowAccounts=${s.account} AllowQos=${s.qos} QOS=${s.qos} Default=NO State=UP`
}

/** Confinement every tenant job runs under: cgroup v2 limits on cores, devices (GPUs) and RAM. */
export const CGROUP_CONF = `CgroupPlugin=cgroup/v2
ConstrainCores=yes
ConstrainDevices=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
`

export function renderSlurm(spec: TenantSpec, r: Resources): DesiredObject[] {
  return r.slurm.flatMap((s) => [
    {
      driver: 'slurm' as const,
      id: `${s.cluster}/sacctmgr.txt`,
      content: `${sacctmgrCommands(spec, s)
        .map((c) => `sacctmgr ${c.join(' ')}`)
        .join('\n')}\n`,
    },
    {
      driver: 'slurm' as const,
      id: `${s.cluster}/slurm.conf`,
      content: `# Dflare tenant ${r.tenant} (spec version ${r.specVersion})\n${renderPartitionLine(spec, s)}\n`,
    },
    { driver: 'slurm' as const, id: `${s.cluster}/cgroup.conf`, content: CGROUP_CONF },
  ])
}
