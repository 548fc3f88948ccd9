/** `npm run bench -- NAME [--json]`: runs bench/NAME.ts, whose `main(args)` prints one JSON object. */
const [name, ...args] = process.argv.slice(2)
if (!name || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: npm run bench -- NAME [--json]\n')
  process.exit(2)
}
const mod = (await import(`./${name}.ts`)) as { main(args: string[]): Promise<void> }
await mod.main(args)
