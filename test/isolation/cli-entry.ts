// Test fixture: the two CLI commands in a bare program, with realms listed in TEST_REALMS.
import { Command } from 'commander'
import { registerIsolation } from '../../src/cli/commands/isolation.ts'
import { registerTenant } from '../../src/cli/commands/tenant.ts'

const deps = {
  realmExists: async (t: string) => (process.env.TEST_REALMS ?? '').split(',').includes(t),
  events: { record: async () => {} },
}
const program = new Command('dflare').exitOverride()
registerTenant(program, deps)
registerIsolation(program, deps)
await program.parseAsync(process.argv)
