/**
 * `npm run bench -- NAME [--json] [options]`: runs bench/NAME.ts, whose default export returns
 * one result object (with the peer's figures from the same run where a peer exists).
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
const mod = (await import(`./${name}.ts`)) as { default: (args: string[]) => Promise<unknown> }
const result = await mod.default(rest.filter((a) => a !== '--json'))
const machine = {
  cores: (await import('node:os')).availableParallelism(),
  node: process.versions.node,
}
const output = { bench: name, machine, ...(result as object) }
process.stdout.write(json ? `${JSON.stringify(output)}\n` : `${JSON.stringify(output, null, 2)}\n`)
process.exit(0)
