import { createHash } from 'node:crypto'

/** The six isolation layers of a tenant. */
export const LAYERS = [
  'identity',
  'ethernet',
  'infiniband',
  'storage',
  'compute',
  'perimeter',
] as const
export type Layer = (typeof LAYERS)[number]

/** Drivers apply the rendered artifacts of one layer (compute has two: Kubernetes and Slurm). */
export const DRIVERS = [
  'ethernet',
  'infiniband',
  'storage',
  'kubernetes',
  'slurm',
  'firewall',
] as const
export type DriverName = (typeof DRIVERS)[number]

export const LAYER_OF: Record<DriverName, Layer> = {
  ethernet: 'ethernet',
  infiniband: 'infiniband',
  storage: 'storage',
  kubernetes: 'compute',
  slurm: 'compute',
  firewall: 'perimeter',
}

/** One rendered artifact: `id` is a relative path such as `nvue/leaf01.yaml`. */
export interface DesiredObject {
  driver: DriverName
  id: string
  content: string
}

export type Action = 'create' | 'change' | 'remove'

export interface Change {
  driver: DriverName
  layer: Layer
  object: string
  action: Action
  /** Content hash after the change (absent for removals). */
  hash?: string
}

export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
