import { createHash, randomBytes } from 'node:crypto'

/** Ten single-use recovery codes of 80 random bits each, shown once, stored as SHA-256. */
export const RECOVERY_CODES = 10
const ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789'

export function newRecoveryCode(): string {
  const bytes = randomBytes(16)
  let out = ''
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length]
  return `${out.slice(0, 4)}-${out.slice(4, 8)}-${out.slice(8, 12)}-${out.slice(12, 16)}`
}

export function hashRecoveryCode(code: string): Buffer {
  const normal = code.toLowerCase().replace(/[^a-z0-9]/g, '')
  return createHash('sha256').update(`dflare-recovery:${normal}`).digest()
}
