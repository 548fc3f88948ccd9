import type { Command } from 'commander'
import { allSettings, loadDflareConfig } from '../../server/config.ts'
import { printJson } from '../exit.ts'

function shown(value: unknown): unknown {
  if (value instanceof URL) return value.toString()
  return value
}

export function registerConfig(program: Command) {
  const config = program.command('config').description('inspect configuration')
  config
    .command('check')
    .description('validate the configuration (defaults < dflare.yaml < DFLARE_* env) and print it')
    .option('--json', 'machine-readable output')
    .option('--config <file>', 'dflare.yaml to read')
    .action((opts: { json?: boolean; config?: string }) => {
      const { config: values, sources, file } = loadDflareConfig({ file: opts.config })
      const settings: Record<string, { value: unknown; source: string; env: string }> = {}
      for (const [section, spec] of Object.entries(allSettings)) {
        const sectionValues = values[section as keyof typeof values] as Record<string, unknown>
        for (const [name, s] of Object.entries(spec)) {
          const value = sectionValues[name]
          settings[s.key] = {
            value: s.secret && value !== undefined ? '(secret)' : (shown(value) ?? null),
            source: sources[s.key]!,
            env: s.env,
          }
        }
      }
      if (opts.json) return printJson({ valid: true, file: file ?? null, settings })
      process.stdout.write(`configuration is valid${file ? ` (${file})` : ''}\n`)
      for (const [key, s] of Object.entries(settings))
        process.stdout.write(`  ${key} = ${JSON.stringify(s.value)}  [${s.source}, ${s.env}]\n`)
    })
}
