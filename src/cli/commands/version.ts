import type { Command } from 'commander'
import { VERSION } from '../../core/version.ts'
import { printJson } from '../exit.ts'

export { VERSION }

export function registerVersion(program: Command) {
  program
    .command('version')
    .description('print the version')
    .option('--json', 'machine-readable output')
    .action((opts: { json?: boolean }) => {
      if (opts.json) printJson({ version: VERSION, node: process.versions.node })
      else process.stdout.write(`dflare ${VERSION} (node ${process.versions.node})\n`)
    })
}
