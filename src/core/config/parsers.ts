import { resolve } from 'node:path'
import { SettingValueError } from './setting.ts'

function text(raw: unknown): string {
  if (typeof raw === 'string') return raw.trim()
  if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw)
  throw new SettingValueError('expected a scalar value')
}

export const parse = {
  string:
    (opts: { pattern?: RegExp; allowEmpty?: boolean } = {}) =>
    (raw: unknown): string => {
      const v = text(raw)
      if (!v && !opts.allowEmpty) throw new SettingValueError('must not be empty')
      if (opts.pattern && !opts.pattern.test(v)) throw new SettingValueError('has the wrong form')
      return v
    },

  optionalString:
    () =>
    (raw: unknown): string | undefined => {
      const v = raw === undefined || raw === null ? '' : text(raw)
      return v || undefined
    },

  int:
    (min: number, max: number) =>
    (raw: unknown): number => {
      const v = text(raw)
      if (!/^-?\d+$/.test(v)) throw new SettingValueError('is not an integer')
      const n = Number(v)
      if (n < min || n > max) throw new SettingValueError(`is out of range ${min}..${max}`)
      return n
    },

  bool:
    () =>
    (raw: unknown): boolean => {
      const v = text(raw).toLowerCase()
      if (['true', '1', 'yes', 'on'].includes(v)) return true
      if (['false', '0', 'no', 'off'].includes(v)) return false
      throw new SettingValueError('is not a boolean')
    },

  oneOf:
    <T extends string>(values: readonly T[]) =>
    (raw: unknown): T => {
      const v = text(raw)
      if (!(values as readonly string[]).includes(v)) throw new SettingValueError('is not allowed')
      return v as T
    },

  /** Durations like `300`, `30s`, `5m`, `8h`, `7d`; returned in milliseconds. */
  duration:
    (minMs: number, maxMs: number) =>
    (raw: unknown): number => {
      const m = /^(\d+)(ms|s|m|h|d)?$/.exec(text(raw))
      if (!m) throw new SettingValueError('is not a duration')
      const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's']!
      const ms = Number(m[1]) * unit
      if (ms < minMs || ms > maxMs) throw new SettingValueError('is out of range')
      return ms
    },

  path:
    () =>
    (raw: unknown): string => {
      const v = text(raw)
      if (!v) throw new SettingValueError('must not be empty')
      return resolve(v)
    },

  url:
    (protocols: readonly string[]) =>
    (raw: unknown): URL => {
      let u: URL
      try {
        u = new URL(text(raw))
      } catch {
        throw new SettingValueError('is not a URL')
      }
      if (!protocols.includes(u.protocol)) throw new SettingValueError('has the wrong scheme')
      return u
    },

  optionalUrl:
    (protocols: readonly string[]) =>
    (raw: unknown): URL | undefined => {
      if (raw === undefined || raw === null || text(raw) === '') return undefined
      return parse.url(protocols)(raw)
    },

  list:
    <T>(item: (raw: unknown) => T) =>
    (raw: unknown): T[] => {
      const items = Array.isArray(raw)
        ? raw
        : text(raw)
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
      return items.map(item)
    },
}
