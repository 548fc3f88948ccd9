// Stand-in for src/cli/main.ts in tests until the lead wires registerAudit there.
import { Command } from 'commander'
import { registerAudit } from '../../src/cli/commands/audit.ts'

const program = new Command('dflare')
registerAudit(program)
await program.parseAsync(process.argv)
