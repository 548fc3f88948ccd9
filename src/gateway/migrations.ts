import { fileURLToPath } from 'node:url'
import type { MigrationSet } from '../core/db/index.ts'

export const gatewayMigrations: MigrationSet = {
  module: 'gateway',
  dir: fileURLToPath(new URL('./migrations/', import.meta.url)),
}
