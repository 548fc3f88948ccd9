import { fileURLToPath } from 'node:url'
import type { MigrationSet } from './db/index.ts'

export const coreMigrations: MigrationSet = {
  module: 'core',
  dir: fileURLToPath(new URL('./db/migrations/', import.meta.url)),
}
