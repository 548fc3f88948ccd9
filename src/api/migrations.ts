import { fileURLToPath } from 'node:url'
import type { MigrationSet } from '../core/db/index.ts'

export const apiMigrations: MigrationSet = {
  module: 'api',
  dir: fileURLToPath(new URL('./migrations/', import.meta.url)),
}
