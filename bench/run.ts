/**
 * `npm run bench -- NAME [--json] [options]`: runs bench/NAME.ts. A bench either default-exports
 * a function returning one result object (printed here with the machine's facts), or exports
 * `main(args)` that prints its own JSON object. Peers' figures come from the same run.
 */
import { readdirSync } from 'node:fs'

const [name, ...rest] = process.argv.slice(2)
const available = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -3))
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${available.join('|')}> [--json]\n`)
  process.exit(2)
}
const json = rest.includes('--json')
const mod = (await import(`./${name}.ts`)) as {
  default?: (args: string[]) => Promise<unknown>
  main?: (args: string[]) => Promise<void>
}
if (!mod.default) {
  await mod.main!(rest)
  process.exit(0)
}
const result = await mod.default(rest.filter((a) => a !== '--json'))
const machine = {
  cores: (await import('node:os')).availableParallelism(),
  node: process.versions.node,
}
const output = { bench: name, machine, ...(result as object) }
process.stdout.write(json ? `${JSON.stringify(output)}\n` : `${JSON.stringify(output, null, 2)}\n`)
process.exit(0)
