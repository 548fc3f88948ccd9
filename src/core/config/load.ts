import { existsSync, readFileSync } from 'node:fs'
import YAML from 'yaml'
import { type SettingsSpec, SettingValueError, type Values } from './setting.ts'

export type Sections = Readonly<Record<string, SettingsSpec>>
export type ConfigOf<S extends Sections> = { readonly [K in keyof S]: Values<S[K]> }

/** A bad setting; its message is the one line printed before exiting with status 2. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv
  /** dflare.yaml path; defaults to DFLARE_CONFIG, else ./dflare.yaml when it exists. */
  file?: string
}

function flatten(obj: unknown, prefix: string, out: Map<string, unknown>) {
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? `${prefix}.${k}` : k, out)
  } else out.set(prefix, obj)
}

function readYaml(file: string): Map<string, unknown> {
  let doc: unknown
  try {
    doc = YAML.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML (${(err as Error).message.split('\n')[0]})`)
  }
  const flat = new Map<string, unknown>()
  if (doc !== null && doc !== undefined) {
    if (typeof doc !== 'object' || Array.isArray(doc))
      throw new ConfigError(`${file}: expected a mapping of settings`)
    flatten(doc, '', flat)
  }
  return flat
}

/** Where a value came from, for `dflare config check`. */
export type Source = 'default' | 'file' | 'env'

export interface Loaded<S extends Sections> {
  config: ConfigOf<S>
  sources: Record<string, Source>
  file?: string
}

export function loadConfig<S extends Sections>(sections: S, options: LoadOptions = {}): Loaded<S> {
  const env = options.env ?? process.env
  const file =
    options.file ?? env.DFLARE_CONFIG ?? (existsSync('dflare.yaml') ? 'dflare.yaml' : undefined)
  if (file && !existsSync(file)) throw new ConfigError(`DFLARE_CONFIG: file ${file} does not exist`)
  const fromFile = file ? readYaml(file) : new Map<string, unknown>()

  const knownEnv = new Set(['DFLARE_CONFIG'])
  const knownKeys = new Set<string>()
  for (const spec of Object.values(sections))
    for (const s of Object.values(spec)) {
      knownEnv.add(s.env)
      knownKeys.add(s.key)
    }
  for (const key of fromFile.keys())
    if (!knownKeys.has(key)) throw new ConfigError(`${file}: unknown setting "${key}"`)
  // A mistyped variable would otherwise silently leave a security setting at its default.
  for (const name of Object.keys(env))
    if (name.startsWith('DFLARE_') && !name.startsWith('DFLARE_TEST_') && !knownEnv.has(name))
      throw new ConfigError(`${name}: unknown setting (see dflare config check --help)`)

  const resolved: Record<string, unknown> = {}
  const sources: Record<string, Source> = {}
  const config: Record<string, Record<string, unknown>> = {}
  for (const [section, spec] of Object.entries(sections)) {
    const values: Record<string, unknown> = {}
    for (const [name, s] of Object.entries(spec)) {
      let value: unknown
      let source: Source = 'default'
      const envRaw = env[s.env]
      const raw = envRaw !== undefined && envRaw !== '' ? envRaw : fromFile.get(s.key)
      if (raw !== undefined) {
        source = envRaw !== undefined && envRaw !== '' ? 'env' : 'file'
        try {
          value = s.parse(raw)
        } catch (err) {
          const why = err instanceof SettingValueError ? err.message : 'is invalid'
          const shown = s.secret ? '(secret)' : JSON.stringify(String(raw))
          throw new ConfigError(`${s.env} (${s.key}): value ${shown} ${why}; allowed: ${s.allowed}`)
        }
      } else {
        value = typeof s.default === 'function' ? s.default(resolved) : s.default
      }
      values[name] = value
      resolved[s.key] = value
      sources[s.key] = source
    }
    config[section] = values
  }
  return { config: config as ConfigOf<S>, sources, file }
}
