import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runDifferential } from './differential.ts'

const runs = Number(process.env.DFLARE_DIFFERENTIAL_RUNS ?? 2000)

test(`compiled evaluator agrees with cedar-wasm on ${runs} generated cases`, () => {
  const stats = runDifferential(runs)
  console.log(`differential: ${JSON.stringify(stats)}`)
  assert.equal(stats.runs, runs)
  // The generator must exercise allows, errors and rejections, not only trivial denies.
  assert.ok(stats.allow > 0 && stats.withErrors > 0)
})
