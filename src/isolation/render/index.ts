import type { Resources } from '../resources.ts'
import type { TenantSpec } from '../spec.ts'
import type { DesiredObject } from '../types.ts'
import { renderEthernet } from './ethernet.ts'
import { renderFirewall } from './firewall.ts'
import { renderInfiniband } from './infiniband.ts'
import { renderKubernetes } from './kubernetes.ts'
import { renderSlurm } from './slurm.ts'
import { renderStorage } from './storage.ts'

/** Every artifact of the tenant, in apply order (network first, perimeter last). */
export function renderAll(spec: TenantSpec, r: Resources): DesiredObject[] {
  return [
    ...renderEthernet(spec, r),
    ...renderInfiniband(spec, r),
    ...renderStorage(spec, r),
    ...renderKubernetes(spec, r),
    ...renderSlurm(spec, r),
    ...renderFirewall(spec, r),
  ]
}
