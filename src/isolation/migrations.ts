import { fileURLToPath } from 'node:url'
import type { MigrationSet } from '../core/db/index.ts'

export const isolationMigrations: MigrationSet = {
  module: 'isolation',
  dir: fileURLToPath(new URL('./migrations/', import.meta.url)),
}
