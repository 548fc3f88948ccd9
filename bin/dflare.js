#!/usr/bin/env node
// `dflare` entry point. Runs on the project's pinned Node 24 (npx and npm scripts put it first on
// PATH), which executes the TypeScript sources natively.
import { main } from '../src/cli/main.ts'

const code = await main(process.argv)
// Long-running commands (`up`, `serve`) set dflareKeepAlive and exit on a signal themselves.
if (code !== 0 || !globalThis.dflareKeepAlive) process.exit(code)
