import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { it } from 'node:test'
import { withTable } from '../../scripts/config-docs.ts'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

it('README opens with the two set-up commands', () => {
  const top = readme.slice(0, 1500)
  assert.match(top, /npm ci && npm start/)
  assert.match(top, /npm ci && npm test/)
})

it('README configuration table matches the settings in the code (npm run docs:config)', () => {
  assert.equal(readme, withTable(readme))
})
