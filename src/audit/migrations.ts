import { fileURLToPath } from 'node:url'
import type { MigrationSet } from '../core/db/index.ts'

export const auditMigrations: MigrationSet = {
  module: 'audit',
  dir: fileURLToPath(new URL('./migrations/', import.meta.url)),
}
