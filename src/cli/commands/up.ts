import type { Command } from 'commander'
import { ConfigError } from '../../core/config/index.ts'
import { createLogger } from '../../core/log.ts'
import { loadDflareConfig } from '../../server/config.ts'
import { runUntilSignal } from '../../server/run.ts'
import { COMPONENTS } from '../../server/topology.ts'

export function registerUp(program: Command) {
  program
    .command('up')
    .description('run every component in one process on embedded defaults')
    .option('--config <file>', 'dflare.yaml to read')
    .action(async (opts: { config?: string }) => {
      const { config } = loadDflareConfig({ file: opts.config })
      // `up` always runs everything; a subset is what `serve` is for (never silently ignored).
      if (config.server.components.length !== COMPONENTS.length)
        throw new ConfigError(
          'DFLARE_COMPONENTS (components): dflare up runs every component; use dflare serve to run a subset',
        )
      const log = createLogger({ level: config.core.logLevel })
      await runUntilSignal(config, log)
    })
}
