import type { Command } from 'commander'
import { SettingValueError } from '../../core/config/index.ts'
import { createLogger } from '../../core/log.ts'
import { loadDflareConfig } from '../../server/config.ts'
import { runUntilSignal } from '../../server/run.ts'
import { COMPONENTS, parseComponents } from '../../server/topology.ts'
import { CliError, EXIT } from '../exit.ts'

/**
 * `dflare serve --components LIST`: runs a subset of the components in this process; the
 * others run in other processes (or hosts) and are reached over mutual TLS. `dflare up` is
 * `serve` with every component and no internal listener.
 */
export function registerServe(program: Command) {
  program
    .command('serve')
    .description('run some of the components in this process; the others are reached over mTLS')
    .option(
      '--components <list>',
      `all, or a comma-separated subset of ${COMPONENTS.join(', ')} (default: DFLARE_COMPONENTS, else all)`,
    )
    .option('--config <file>', 'dflare.yaml to read')
    .action(async (opts: { components?: string; config?: string }) => {
      let fromFlag: ReturnType<typeof parseComponents> | undefined
      if (opts.components !== undefined)
        try {
          fromFlag = parseComponents(opts.components)
        } catch (err) {
          if (!(err instanceof SettingValueError)) throw err
          throw new CliError(
            `--components ${JSON.stringify(opts.components.slice(0, 80))} ${err.message}; allowed: all, or a comma-separated subset of ${COMPONENTS.join(', ')}`,
            EXIT.usage,
          )
        }
      const { config } = loadDflareConfig({ file: opts.config })
      const log = createLogger({ level: config.core.logLevel })
      await runUntilSignal(config, log, {
        components: fromFlag ?? config.server.components,
        internal: true,
      })
    })
}
