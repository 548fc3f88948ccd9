import type { Command } from 'commander'
import { createLogger } from '../../core/log.ts'
import { loadDflareConfig } from '../../server/config.ts'
import { runUntilSignal } from '../../server/run.ts'

export function registerUp(program: Command) {
  program
    .command('up')
    .description('run every component in one process on embedded defaults')
    .option('--config <file>', 'dflare.yaml to read')
    .action(async (opts: { config?: string }) => {
      const { config } = loadDflareConfig({ file: opts.config })
      const log = createLogger({ level: config.core.logLevel })
      await runUntilSignal(config, log)
    })
}
