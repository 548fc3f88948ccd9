import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Queryable } from '../../core/db/index.ts'

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

/** Replaces a user's recovery codes (stored hashed), inside the caller's transaction. */
export async function replaceRecoveryCodes(
  q: Queryable,
  realm: string,
  userId: string,
  codes: readonly string[],
) {
  await q.query(
    `DELETE FROM iam.mfa_factors WHERE realm = $1 AND user_id = $2 AND kind = 'recovery'`,
    [realm, userId],
  )
  for (const code of codes)
    await q.query(
      `INSERT INTO iam.mfa_factors (realm, id, user_id, kind, secret, confirmed)
       VALUES ($1, $2, $3, 'recovery', $4, true)`,
      [realm, randomUUID(), userId, hashRecoveryCode(code)],
    )
}
