import { readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { printJson } from '../exit.ts'

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
).version

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
