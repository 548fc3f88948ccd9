import { Secret, TOTP } from 'otpauth'

/** RFC 6238: SHA-1, 6 digits, 30 s steps; one step of clock drift accepted either side. */
const PERIOD = 30
const WINDOW = 1

export function newTotpSecret(): string {
  return new Secret({ size: 20 }).base32
}

function totp(secret: string, issuer = 'Dflare', label = 'user') {
  return new TOTP({
    issuer,
    label,
    algorithm: 'SHA1',
    digits: 6,
    period: PERIOD,
    secret: Secret.fromBase32(secret),
  })
}

export function totpUri(secret: string, issuer: string, label: string): string {
  return totp(secret, issuer, label).toString()
}

export function totpCode(secret: string, at: number = Date.now()): string {
  return totp(secret).generate({ timestamp: at })
}

/**
 * Checks a code; returns the time step it matched, or undefined. The caller stores the step
 * and refuses any code whose step is not later than the last one used (no replay).
 */
export function matchTotp(secret: string, code: string, at: number = Date.now()) {
  if (!/^\d{6}$/.test(code)) return undefined
  const delta = totp(secret).validate({ token: code, timestamp: at, window: WINDOW })
  if (delta === null) return undefined
  return Math.floor(at / 1000 / PERIOD) + delta
}
