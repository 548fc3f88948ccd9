import { apiMigrations } from '../api/migrations.ts'
import { auditMigrations } from '../audit/migrations.ts'
import { authzMigrations } from '../authz/migrations.ts'
import type { MigrationSet } from '../core/db/index.ts'
import { coreMigrations } from '../core/migrations.ts'
import { gatewayMigrations } from '../gateway/migrations.ts'
import { iamMigrations } from '../iam/migrations.ts'
import { isolationMigrations } from '../isolation/migrations.ts'
import { pkiMigrations } from '../pki/migrations.ts'

/** Every module's migrations, in dependency order (core first). */
export const allMigrations: readonly MigrationSet[] = [
  coreMigrations,
  authzMigrations,
  iamMigrations,
  gatewayMigrations,
  apiMigrations,
  auditMigrations,
  pkiMigrations,
  isolationMigrations,
]
