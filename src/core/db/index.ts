export { DataDirLocked, lockDataDir } from './lock.ts'
export {
  type Migration,
  MigrationError,
  type MigrationSet,
  migrate,
  pendingMigrations,
} from './migrate.ts'
export { assertIdentifier } from './names.ts'
export { type DbTarget, openDb } from './open.ts'
export * from './types.ts'
