/**
 * Generates the README's configuration table from the settings declarations, so the docs stay
 * true to the code. `npm run docs:config` rewrites README.md between the markers; the test suite
 * fails when the README is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { allSettings } from '../src/server/config.ts'

export const START = '<!-- config:start -->'
export const END = '<!-- config:end -->'

function defaultText(s: { default: unknown; defaultDoc?: string }): string {
  if (s.defaultDoc) return s.defaultDoc
  const d = s.default
  if (d instanceof URL) return d.toString().replace(/\/$/, '')
  if (Array.isArray(d)) return d.length ? d.join(',') : '(none)'
  return d === undefined ? '(none)' : String(d)
}

export function configTable(): string {
  const rows = [
    '| env var | dflare.yaml key | default | allowed | meaning |',
    '|---|---|---|---|---|',
  ]
  for (const section of Object.values(allSettings))
    for (const s of Object.values(section) as {
      env: string
      key: string
      doc: string
      allowed: string
      default: unknown
      defaultDoc?: string
    }[])
      rows.push(`| \`${s.env}\` | \`${s.key}\` | \`${defaultText(s)}\` | ${s.allowed} | ${s.doc} |`)
  return rows.join('\n')
}

export function withTable(readme: string): string {
  const a = readme.indexOf(START)
  const b = readme.indexOf(END)
  if (a < 0 || b < a) throw new Error(`README.md lacks the ${START} … ${END} markers`)
  return `${readme.slice(0, a + START.length)}\n${configTable()}\n${readme.slice(b)}`
}

if (import.meta.main) {
  const path = new URL('../README.md', import.meta.url)
  writeFileSync(path, withTable(readFileSync(path, 'utf8')))
}
