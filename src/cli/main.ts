import { Command, CommanderError } from 'commander'
import { ConfigError } from '../core/config/index.ts'
import { DataDirLocked } from '../core/db/index.ts'
import { registerAudit } from './commands/audit.ts'
import { registerAuthz } from './commands/authz.ts'
import { registerConfig } from './commands/config.ts'
import { registerIsolation } from './commands/isolation.ts'
import { registerLogin } from './commands/login.ts'
import { registerPki } from './commands/pki.ts'
import { registerServe } from './commands/serve.ts'
import { registerTenant } from './commands/tenant.ts'
import { registerUp } from './commands/up.ts'
import { registerVersion, VERSION } from './commands/version.ts'
import { CliError, EXIT } from './exit.ts'

export function buildProgram(): Command {
  const program = new Command('dflare')
    .description('Dflare: zero-trust security and tenant-isolation control plane')
    .version(VERSION, '-V, --version')
    .showHelpAfterError()
  registerUp(program)
  registerServe(program)
  registerVersion(program)
  registerConfig(program)
  registerAudit(program)
  registerAuthz(program)
  registerPki(program)
  registerLogin(program)
  registerTenant(program)
  registerIsolation(program)
  // Usage errors of every subcommand throw instead of exiting, so that they map to exit 2.
  const override = (cmd: Command) => {
    cmd.exitOverride()
    for (const sub of cmd.commands) override(sub)
  }
  override(program)
  return program
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv)
    return Number(process.exitCode ?? EXIT.ok)
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version "errors" are successful exits.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`dflare: configuration error: ${err.message}\n`)
      return EXIT.usage
    }
    if (err instanceof DataDirLocked) {
      // The embedded database is another process's (a running `dflare up`): never opened twice.
      process.stderr.write(`dflare: ${err.message}\n`)
      return EXIT.usage
    }
    if (err instanceof CliError) {
      process.stderr.write(`dflare: ${err.message}\n`)
      return err.code
    }
    process.stderr.write(`dflare: ${(err as Error)?.message ?? String(err)}\n`)
    return EXIT.failure
  }
}
