import { ConfigError } from '../../core/config/index.ts'
import type { IsolationConfig } from '../service.ts'
import { DRIVERS, type DriverName } from '../types.ts'
import { FileDriver } from './files.ts'
import { KubernetesDriver } from './kubernetes.ts'
import { SlurmDriver } from './slurm.ts'
import type { Driver } from './types.ts'
import { UfmDriver } from './ufm.ts'

/**
 * One driver per layer: an endpoint driver where one is configured (Kubernetes with a
 * kubeconfig, Slurm with sacctmgr, InfiniBand with UFM), the artifact folder otherwise.
 */
export function createDrivers(config: IsolationConfig): Record<DriverName, Driver> {
  const file = (name: DriverName) => new FileDriver(name, config.artifacts)
  const drivers = {} as Record<DriverName, Driver>
  for (const name of DRIVERS) drivers[name] = file(name)
  if (config.kubeconfig)
    drivers.kubernetes = new KubernetesDriver(config.kubeconfig, file('kubernetes'))
  if (config.sacctmgr) drivers.slurm = new SlurmDriver(config.sacctmgr, file('slurm'))
  if (config.ufmUrl) {
    if (!config.ufmCredentials)
      throw new ConfigError(
        'DFLARE_ISOLATION_UFM_CREDENTIALS (isolation.ufm.credentials): required with a UFM URL',
      )
    drivers.infiniband = new UfmDriver(config.ufmUrl, config.ufmCredentials, file('infiniband'))
  }
  return drivers
}
