import { fileURLToPath } from 'node:url'
import type { MigrationSet } from '../core/db/index.ts'

export const iamMigrations: MigrationSet = {
  module: 'iam',
  dir: fileURLToPath(new URL('./migrations/', import.meta.url)),
}
