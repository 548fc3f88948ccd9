import { createHmac, randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { dirname } from 'node:path'

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

/**
 * Keyed pseudonyms (HMAC-SHA-256, truncated to 128 bits, base64url) for personal data and token
 * ids. The same input under the same key always maps to the same pseudonym, so investigators can
 * correlate events and, holding the key, test whether a known email produced a pseudonym; without
 * the key the values cannot be reversed or brute-forced offline. See docs/audit.md.
 */
export class Pseudonymizer {
  readonly #key: Buffer
  readonly #ips: boolean

  constructor(key: Buffer, options: { pseudonymizeIps: boolean }) {
    if (key.length < 32) throw new Error('the audit pseudonym key must be at least 32 bytes')
    this.#key = key
    this.#ips = options.pseudonymizeIps
  }

  pseudonym(kind: 'email' | 'ip' | 'tok', value: string): string {
    const mac = createHmac('sha256', this.#key).update(`${kind}\u0000${value}`).digest()
    return `${kind}:${mac.subarray(0, 16).toString('base64url')}`
  }

  /** Emails (case-insensitively) become `email:…`; anything else is returned unchanged. */
  maybeEmail(value: string): string {
    const v = value.trim()
    return EMAIL.test(v) ? this.pseudonym('email', v.toLowerCase()) : value
  }

  ip(value: string): string {
    const v = value.trim().toLowerCase()
    if (!isIP(v.replace(/^::ffff:/, ''))) return this.pseudonym('ip', v) // never store junk in clear
    return this.#ips ? this.pseudonym('ip', v) : v
  }

  token(value: string): string {
    return this.pseudonym('tok', value)
  }
}

/** Reads the key file, creating a random 32-byte key (mode 0600) on first use. */
export async function loadOrCreateKeyFile(path: string): Promise<Buffer> {
  try {
    const raw = (await readFile(path, 'utf8')).trim()
    const key = Buffer.from(raw, 'base64')
    if (key.length < 32) throw new Error(`${path}: the audit pseudonym key is too short`)
    return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const key = randomBytes(32)
  try {
    await writeFile(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' })
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateKeyFile(path)
    throw err
  }
  await chmod(path, 0o600)
  return key
}
