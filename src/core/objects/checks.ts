import type { Clock } from '../clock.ts'
import { InvalidObjectKeyError } from './types.ts'

/** S3's limit on key length; also keeps directory paths well under PATH_MAX. */
export const MAX_KEY_LENGTH = 1024
/** NAME_MAX on common filesystems. */
const MAX_SEGMENT_LENGTH = 255
/**
 * One path segment: the safe characters only, and never starting with `.` — that excludes `.`
 * and `..` and reserves dot-names for the store's own files (temp files, retention records).
 */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/

function invalid(key: string, why: string): never {
  // Quote the key as JSON so control characters cannot forge log lines; cap its length.
  throw new InvalidObjectKeyError(`Invalid object key ${JSON.stringify(key.slice(0, 200))}: ${why}`)
}

/** Checks a key and returns it; throws InvalidObjectKeyError. */
export function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) invalid(String(key), 'empty')
  if (key.length > MAX_KEY_LENGTH) invalid(key, `longer than ${MAX_KEY_LENGTH} characters`)
  for (const segment of key.split('/')) {
    if (segment.length === 0) invalid(key, 'empty segment (leading, trailing or double `/`)')
    if (segment.length > MAX_SEGMENT_LENGTH) invalid(key, 'segment too long')
    if (!SEGMENT.test(segment))
      invalid(key, 'segments use only A-Z a-z 0-9 . _ - and do not start with `.`')
  }
  return key
}

/**
 * Checks a list prefix: any leading part of a valid key (it may end inside a segment or with
 * `/`). The empty prefix lists everything.
 */
export function checkPrefix(prefix: string): string {
  if (prefix === '') return prefix
  try {
    // `a/` is the start of `a/x`; any other prefix must itself be shaped like a key.
    checkKey(prefix.endsWith('/') ? `${prefix}x` : prefix)
  } catch {
    throw new InvalidObjectKeyError(
      `Invalid object key prefix ${JSON.stringify(prefix.slice(0, 200))}`,
    )
  }
  return prefix
}

/** Whether `key` is a valid key, for filtering foreign names found in a store. */
export function isValidKey(key: string): boolean {
  try {
    checkKey(key)
    return true
  } catch {
    return false
  }
}

/** A retention date must be a valid Date in the future. */
export function checkRetainUntil(retainUntil: Date | undefined, clock: Clock) {
  if (retainUntil === undefined) return
  if (!(retainUntil instanceof Date) || Number.isNaN(retainUntil.getTime()))
    throw new TypeError('retainUntil must be a valid Date')
  if (retainUntil <= clock.now()) throw new RangeError('retainUntil must be in the future')
}
