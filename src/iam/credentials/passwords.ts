import { hash, verify } from '@node-rs/argon2'
import { problems } from '../../core/errors.ts'

/**
 * Passwords per NIST SP 800-63B §3.1.1: at least 8 characters (15 when the password is the only
 * factor is left to MFA policy), at most 256, any characters (NFKC-normalised), no composition
 * rules, checked against a blocklist of common and context-specific values.
 */
export const PASSWORD_MIN = 8
export const PASSWORD_MAX = 256

// The most common passwords of the public breach corpora; enough to refuse the obvious ones.
const COMMON = new Set([
  'password',
  'password1',
  'password123',
  '12345678',
  '123456789',
  '1234567890',
  'qwertyui',
  'qwerty123',
  'iloveyou',
  'letmein1',
  'welcome1',
  'admin123',
  'administrator',
  'changeme',
  'passw0rd',
  'p@ssw0rd',
  '11111111',
  '00000000',
  'abc12345',
  'football',
  'baseball',
  'sunshine',
  'princess',
  'trustno1',
])

export function normalizePassword(password: string): string {
  return password.normalize('NFKC')
}

/** Returns the reason a new password is refused, or undefined when acceptable. */
export function passwordProblem(password: string, context: readonly string[] = []) {
  const p = normalizePassword(password)
  const length = [...p].length
  if (length < PASSWORD_MIN) return `must be at least ${PASSWORD_MIN} characters`
  if (length > PASSWORD_MAX) return `must be at most ${PASSWORD_MAX} characters`
  const lower = p.toLowerCase()
  if (COMMON.has(lower)) return 'is too common'
  if (/^(.)\1+$/.test(p)) return 'is a repeated character'
  for (const word of context)
    if (word.length >= 3 && lower.includes(word.toLowerCase()))
      return 'must not contain the user name or realm'
  return undefined
}

export function assertAcceptablePassword(password: string, context: readonly string[] = []) {
  const reason = passwordProblem(password, context)
  if (reason)
    throw problems.badRequest(`Password ${reason}`, [{ field: 'password', message: reason }])
}

// OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
const ARGON = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const

export function hashPassword(password: string): Promise<string> {
  return hash(normalizePassword(password), ARGON)
}

let dummy: Promise<string> | undefined

/**
 * Verifies a password against a stored hash. With no hash (unknown user, no password set) it
 * verifies against a dummy hash so the failure costs the same time as a wrong password.
 */
export async function verifyPassword(stored: string | undefined, password: string) {
  const candidate = normalizePassword(password)
  if ([...candidate].length > PASSWORD_MAX) return false
  if (!stored) {
    dummy ??= hash('dflare-dummy-password-for-timing', ARGON)
    await verify(await dummy, candidate).catch(() => false)
    return false
  }
  try {
    return await verify(stored, candidate)
  } catch {
    return false
  }
}
