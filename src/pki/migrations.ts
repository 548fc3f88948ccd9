import { fileURLToPath } from 'node:url'
import type { MigrationSet } from '../core/db/index.ts'

export const pkiMigrations: MigrationSet = {
  module: 'pki',
  dir: fileURLToPath(new URL('./migrations/', import.meta.url)),
}
