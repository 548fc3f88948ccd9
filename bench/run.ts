// `npm run bench -- NAME [--json] [args]`: runs bench/NAME.ts, whose `main(args)` returns the figures.
const [name, ...args] = process.argv.slice(2)
if (!name || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: npm run bench -- NAME [--json] [options]\n')
  process.exit(2)
}
const mod = (await import(`./${name}.ts`)) as { main(args: string[]): Promise<unknown> }
const result = await mod.main(args)
process.stdout.write(
  args.includes('--json') ? `${JSON.stringify(result)}\n` : `${JSON.stringify(result, null, 2)}\n`,
)
