/**
 * Declarative settings: each module lists its settings (env var, YAML key, default, parser and
 * documentation) and the loader resolves defaults < dflare.yaml < environment. The README's
 * configuration table is generated from the same declarations (`npm run docs:config`).
 */
export interface Setting<T> {
  /** Environment variable, e.g. `DFLARE_LISTEN`. */
  env: string
  /** Dotted key in dflare.yaml, e.g. `listen` or `audit.checkpointInterval`. */
  key: string
  /** What it means, one sentence. */
  doc: string
  /** Human description of the accepted values, used in errors and docs. */
  allowed: string
  /** Default value, or a function of the already-resolved core settings (e.g. paths under home). */
  default: T | ((resolved: ResolvedSoFar) => T)
  /** Text shown for the default in docs, when the default is computed. */
  defaultDoc?: string
  /** Parses a raw value (string from env, any YAML scalar); throws SettingValueError when invalid. */
  parse: (raw: unknown) => T
  /** Never printed by `config check`. */
  secret?: boolean
}

export type ResolvedSoFar = Readonly<Record<string, unknown>>

export type SettingsSpec = Readonly<Record<string, Setting<unknown>>>

/** The typed values of a section: `{ listen: URL, … }` for `{ listen: Setting<URL>, … }`. */
export type Values<S extends SettingsSpec> = {
  readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : never
}

export class SettingValueError extends Error {
  override name = 'SettingValueError'
}

/** Keeps the literal keys of a section while checking it is made of settings. */
export function defineSettings<S extends Record<string, Setting<unknown>>>(spec: S): S {
  return spec
}
