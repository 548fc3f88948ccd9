// `npm run bench -- NAME [--json]`: runs bench/NAME.ts's `run(args)` and prints its figures.
const [name, ...args] = process.argv.slice(2)
if (!name || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: npm run bench -- NAME [--json]\n')
  process.exit(2)
}
const mod = (await import(`./${name}.ts`)) as { run(args: string[]): Promise<unknown> }
const result = await mod.run(args)
process.stdout.write(
  args.includes('--json') ? `${JSON.stringify(result)}\n` : `${JSON.stringify(result, null, 2)}\n`,
)
process.exit(0)
