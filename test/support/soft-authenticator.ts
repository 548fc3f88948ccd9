import {
  createHash,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  randomUUID,
  sign,
} from 'node:crypto'

/**
 * A software WebAuthn authenticator for tests: ES256 keys from node:crypto, attestation 'none',
 * authenticator data, client data and CBOR written by hand (WebAuthn Level 2 §6.1, §6.5), so the
 * server's ceremonies run against real signatures; every field can be bent for attacker cases.
 */

/** Minimal CBOR (RFC 8949) writer: integers, byte and text strings, arrays, maps. */
export function cbor(value: unknown): Buffer {
  const head = (major: number, n: number): Buffer => {
    if (n < 24) return Buffer.from([(major << 5) | n])
    if (n < 0x100) return Buffer.from([(major << 5) | 24, n])
    if (n < 0x10000) {
      const b = Buffer.alloc(3)
      b[0] = (major << 5) | 25
      b.writeUInt16BE(n, 1)
      return b
    }
    const b = Buffer.alloc(5)
    b[0] = (major << 5) | 26
    b.writeUInt32BE(n, 1)
    return b
  }
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError('integers only')
    return value >= 0 ? head(0, value) : head(1, -1 - value)
  }
  if (Buffer.isBuffer(value) || value instanceof Uint8Array)
    return Buffer.concat([head(2, value.length), Buffer.from(value)])
  if (typeof value === 'string') {
    const b = Buffer.from(value, 'utf8')
    return Buffer.concat([head(3, b.length), b])
  }
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cbor)])
  if (value instanceof Map) {
    const parts: Buffer[] = [head(5, value.size)]
    for (const [k, v] of value) parts.push(cbor(k), cbor(v))
    return Buffer.concat(parts)
  }
  if (typeof value === 'object' && value !== null) return cbor(new Map(Object.entries(value)))
  throw new TypeError(`cannot encode ${typeof value}`)
}

const b64url = (b: Buffer | Uint8Array) => Buffer.from(b).toString('base64url')
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest()

const FLAG = { UP: 0x01, UV: 0x04, BE: 0x08, BS: 0x10, AT: 0x40 }

export interface Bend {
  /** Origin written into client data (default: the authenticator's origin). */
  origin?: string
  /** RP ID whose hash goes into authenticator data (default: from the options). */
  rpId?: string
  /** Challenge written into client data (default: from the options). */
  challenge?: string
  type?: string
  /** Signature counter to report (default: the next one). */
  counter?: number
  userPresent?: boolean
  userVerified?: boolean
  /** Sign with this key instead of the credential's own. */
  signWith?: KeyObject
  /** Registration: use this credential id (e.g. one copied from a victim). */
  credentialId?: Buffer
}

export interface SoftCredential {
  id: Buffer
  privateKey: KeyObject
  publicKey: KeyObject
  counter: number
  userHandle?: string
}

export class SoftAuthenticator {
  readonly origin: string
  readonly aaguid: Buffer
  /** Backup eligible and backed up (a synced passkey) instead of device-bound. */
  readonly synced: boolean
  readonly credentials: SoftCredential[] = []

  constructor(origin: string, opts: { synced?: boolean } = {}) {
    this.origin = origin
    this.synced = opts.synced ?? false
    this.aaguid = Buffer.from(randomUUID().replace(/-/g, ''), 'hex')
  }

  #flags(extra: number, bend: Bend) {
    let f = extra
    if (bend.userPresent !== false) f |= FLAG.UP
    if (bend.userVerified !== false) f |= FLAG.UV
    if (this.synced) f |= FLAG.BE | FLAG.BS
    return f
  }

  #clientData(type: string, challenge: string, bend: Bend) {
    return Buffer.from(
      JSON.stringify({
        type: bend.type ?? type,
        challenge: bend.challenge ?? challenge,
        origin: bend.origin ?? this.origin,
        crossOrigin: false,
      }),
    )
  }

  /** navigator.credentials.create() for the options JSON; returns RegistrationResponseJSON. */
  // biome-ignore lint/suspicious/noExplicitAny: options JSON as the server sends it
  create(options: any, bend: Bend = {}) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = publicKey.export({ format: 'jwk' })
    const cose = cbor(
      new Map<number, unknown>([
        [1, 2], // kty: EC2
        [3, -7], // alg: ES256
        [-1, 1], // crv: P-256
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    )
    const id = bend.credentialId ?? randomBytes(32)
    const counter = bend.counter ?? 0
    const idLength = Buffer.alloc(2)
    idLength.writeUInt16BE(id.length)
    const count = Buffer.alloc(4)
    count.writeUInt32BE(counter)
    const authData = Buffer.concat([
      sha256(bend.rpId ?? options.rp.id),
      Buffer.from([this.#flags(FLAG.AT, bend)]),
      count,
      this.aaguid,
      idLength,
      id,
      cose,
    ])
    const clientDataJSON = this.#clientData('webauthn.create', options.challenge, bend)
    const credential: SoftCredential = {
      id,
      privateKey,
      publicKey,
      counter,
      userHandle: options.user?.id,
    }
    this.credentials.push(credential)
    return {
      id: b64url(id),
      rawId: b64url(id),
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientDataJSON),
        attestationObject: b64url(cbor({ fmt: 'none', attStmt: {}, authData })),
        transports: ['internal'],
      },
      authenticatorAttachment: 'platform',
      clientExtensionResults: {},
    }
  }

  /** navigator.credentials.get(); uses the first allowed credential it holds (or `credential`). */
  // biome-ignore lint/suspicious/noExplicitAny: options JSON as the server sends it
  get(options: any, bend: Bend = {}, credential?: SoftCredential) {
    const allowed: string[] = (options.allowCredentials ?? []).map((c: { id: string }) => c.id)
    const cred =
      credential ??
      this.credentials.find((c) => allowed.length === 0 || allowed.includes(b64url(c.id)))
    if (!cred) throw new Error('no allowed credential on this authenticator')
    const counter = bend.counter ?? cred.counter + 1
    cred.counter = Math.max(cred.counter, counter)
    const count = Buffer.alloc(4)
    count.writeUInt32BE(counter)
    const authData = Buffer.concat([
      sha256(bend.rpId ?? options.rpId),
      Buffer.from([this.#flags(0, bend)]),
      count,
    ])
    const clientDataJSON = this.#clientData('webauthn.get', options.challenge, bend)
    const signature = sign(
      'sha256',
      Buffer.concat([authData, sha256(clientDataJSON)]),
      bend.signWith ?? cred.privateKey,
    )
    return {
      id: b64url(cred.id),
      rawId: b64url(cred.id),
      type: 'public-key',
      response: {
        clientDataJSON: b64url(clientDataJSON),
        authenticatorData: b64url(authData),
        signature: b64url(signature),
        ...(cred.userHandle ? { userHandle: cred.userHandle } : {}),
      },
      authenticatorAttachment: 'platform',
      clientExtensionResults: {},
    }
  }
}
