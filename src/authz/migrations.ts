import { fileURLToPath } from 'node:url'
import type { MigrationSet } from '../core/db/index.ts'

export const authzMigrations: MigrationSet = {
  module: 'authz',
  dir: fileURLToPath(new URL('./migrations/', import.meta.url)),
}
