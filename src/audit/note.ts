import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto'

/**
 * C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and C2SP tlog-checkpoint
 * bodies (https://c2sp.org/tlog-checkpoint).
 */

const ED25519 = 0x01
const NAME = /^[^\s+]+$/
const SIG_LINE = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** Key id: the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key). */
export function keyId(name: string, publicKey: Buffer): Buffer {
  return createHash('sha256')
    .update(`${name}\n`)
    .update(Buffer.from([ED25519]))
    .update(publicKey)
    .digest()
    .subarray(0, 4)
}

export function rawPublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' })
  return Buffer.from(jwk.x!, 'base64url')
}

/** A verifier key as the `name+hexid+base64(0x01 ‖ key)` string of the spec. */
export interface VerifierKey {
  name: string
  id: Buffer
  publicKey: KeyObject
  vkey: string
}

export function verifierKey(name: string, publicKey: Buffer): VerifierKey {
  if (!NAME.test(name)) throw new Error('key name must not contain spaces or "+"')
  if (publicKey.length !== 32) throw new Error('Ed25519 public keys are 32 bytes')
  const id = keyId(name, publicKey)
  const vkey = `${name}+${id.toString('hex')}+${Buffer.concat([Buffer.from([ED25519]), publicKey]).toString('base64')}`
  const key = createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]),
    format: 'der',
    type: 'spki',
  })
  return { name, id, publicKey: key, vkey }
}

export function parseVerifierKey(vkey: string): VerifierKey {
  // The base64 key may itself contain '+': only the first two separate fields.
  const m = /^([^\s+]+)\+([0-9a-fA-F]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim())
  if (!m) throw new Error('verifier key must be name+hexid+base64key')
  const [, name, hexId, b64] = m as unknown as [string, string, string, string]
  const raw = Buffer.from(b64, 'base64')
  if (raw.length !== 33 || raw[0] !== ED25519) throw new Error('verifier key is not Ed25519')
  const key = verifierKey(name, raw.subarray(1))
  if (key.id.toString('hex') !== hexId.toLowerCase())
    throw new Error('verifier key id does not match its name and key')
  return key
}

export interface Signer {
  name: string
  id: Buffer
  privateKey: KeyObject
}

/** Signs `text` (which must end in a newline) and returns the full note. */
export function signNote(text: string, signers: readonly Signer[]): string {
  if (!text.endsWith('\n')) throw new Error('note text must end with a newline')
  const lines = signers.map((s) => {
    const sig = sign(null, Buffer.from(text, 'utf8'), s.privateKey)
    return `\u2014 ${s.name} ${Buffer.concat([s.id, sig]).toString('base64')}\n`
  })
  return `${text}\n${lines.join('')}`
}

export interface OpenedNote {
  text: string
  /** The known keys whose signatures verified. */
  verifiedBy: VerifierKey[]
}

/**
 * Splits a note and checks its signatures against `keys`. Throws when the note is malformed or
 * no known key signed it; unknown signers are ignored, as the spec requires.
 */
export function openNote(note: string, keys: readonly VerifierKey[]): OpenedNote {
  const cut = note.lastIndexOf('\n\n')
  if (cut < 0 || !note.endsWith('\n')) throw new Error('malformed note')
  const text = note.slice(0, cut + 1)
  const sigLines = note.slice(cut + 2, -1).split('\n')
  const verifiedBy: VerifierKey[] = []
  for (const line of sigLines) {
    const m = SIG_LINE.exec(line)
    if (!m) throw new Error('malformed signature line')
    const blob = Buffer.from(m[2]!, 'base64')
    if (blob.length < 5) throw new Error('malformed signature')
    for (const k of keys) {
      if (k.name !== m[1] || !k.id.equals(blob.subarray(0, 4))) continue
      if (verify(null, Buffer.from(text, 'utf8'), k.publicKey, blob.subarray(4))) verifiedBy.push(k)
    }
  }
  if (verifiedBy.length === 0) throw new Error('note is not signed by a known key')
  return { text, verifiedBy }
}

export interface Checkpoint {
  origin: string
  size: number
  root: Buffer
}

export function checkpointText(c: Checkpoint): string {
  return `${c.origin}\n${c.size}\n${c.root.toString('base64')}\n`
}

export function parseCheckpointText(text: string): Checkpoint {
  const lines = text.split('\n')
  if (lines.length < 4 || lines[lines.length - 1] !== '') throw new Error('malformed checkpoint')
  const [origin, size, root] = lines as [string, string, string]
  if (!origin || !/^(0|[1-9]\d*)$/.test(size)) throw new Error('malformed checkpoint')
  const rootBytes = Buffer.from(root, 'base64')
  if (rootBytes.length !== 32 || rootBytes.toString('base64') !== root)
    throw new Error('malformed checkpoint root')
  return { origin, size: Number(size), root: rootBytes }
}

/** Opens a signed checkpoint note: signature first, then the body. */
export function openCheckpoint(note: string, keys: readonly VerifierKey[]) {
  const opened = openNote(note, keys)
  return { ...parseCheckpointText(opened.text), verifiedBy: opened.verifiedBy }
}
