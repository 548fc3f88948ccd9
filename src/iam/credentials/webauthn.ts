import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server'

/**
 * WebAuthn (passkeys) as a second factor, on @simplewebauthn/server. The relying party of every
 * realm is the public host of its issuer (all realms of one server share it; credentials are
 * bound to their realm and user in storage), the expected origin is the public origin.
 * Attestation is not requested ('none'); user verification is preferred, not required (the
 * password is the other factor).
 */
export interface RelyingParty {
  /** RP ID: the host name of the public URL (browsers refuse an IP address here). */
  id: string
  /** Expected origin of client data: the public origin. */
  origin: string
  /** Shown by the authenticator. */
  name: string
}

export function relyingPartyFor(publicUrl: URL, realm: string): RelyingParty {
  return {
    id: publicUrl.hostname.replace(/^\[|\]$/g, ''),
    origin: publicUrl.origin,
    name: `Dflare ${realm}`,
  }
}

/** Challenges live this long (seconds); the browser prompt times out earlier. */
export const CHALLENGE_TTL_SECONDS = 300
export const CEREMONY_TIMEOUT_MS = 120_000
/** COSE algorithms accepted: ES256, EdDSA, RS256. */
export const SUPPORTED_ALGORITHMS = [-7, -8, -257]
const TRANSPORTS = new Set(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb'])

/** Why a ceremony response was refused (the reason of its security event). */
export type WebAuthnFailure =
  | 'no_challenge'
  | 'invalid_response'
  | 'wrong_type'
  | 'origin_mismatch'
  | 'rp_id_mismatch'
  | 'challenge_mismatch'
  | 'user_not_present'
  | 'unsupported_algorithm'
  | 'unknown_credential'
  | 'user_handle_mismatch'
  | 'invalid_signature'
  | 'counter_regression'
  | 'duplicate_credential'

export class WebAuthnRefused extends Error {
  readonly reason: WebAuthnFailure
  constructor(reason: WebAuthnFailure) {
    super(`webauthn: ${reason}`)
    this.reason = reason
  }
}

// Loaded on first use, like oidc-provider: start-up does not pay for it.
let library: Promise<typeof import('@simplewebauthn/server')> | undefined
const lib = () => {
  library ??= import('@simplewebauthn/server')
  return library
}

/** The user handle of a user: the 16 bytes of its UUID (no personal data). */
export function userHandle(userId: string): Uint8Array<ArrayBuffer> {
  const hex = userId.replace(/-/g, '')
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new TypeError('user ids are UUIDs')
  return new Uint8Array(Buffer.from(hex, 'hex'))
}

export interface StoredCredential {
  credentialId: string
  publicKey: Buffer
  counter: number
  transports: string[]
}

export async function registrationOptions(
  rp: RelyingParty,
  user: { id: string; username: string; displayName: string },
  exclude: readonly StoredCredential[],
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const { generateRegistrationOptions } = await lib()
  return generateRegistrationOptions({
    rpName: rp.name,
    rpID: rp.id,
    userName: user.username,
    userID: userHandle(user.id),
    userDisplayName: user.displayName || user.username,
    timeout: CEREMONY_TIMEOUT_MS,
    attestationType: 'none',
    excludeCredentials: exclude.map((c) => ({ id: c.credentialId, transports: c.transports })),
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
    supportedAlgorithmIDs: SUPPORTED_ALGORITHMS,
  })
}

export async function authenticationOptions(
  rp: RelyingParty,
  allow: readonly StoredCredential[],
): Promise<PublicKeyCredentialRequestOptionsJSON> {
  const { generateAuthenticationOptions } = await lib()
  return generateAuthenticationOptions({
    rpID: rp.id,
    allowCredentials: allow.map((c) => ({ id: c.credentialId, transports: c.transports })),
    userVerification: 'preferred',
    timeout: CEREMONY_TIMEOUT_MS,
  })
}

const B64URL = /^[A-Za-z0-9_-]+$/

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Parses a credential posted by the page (JSON of PublicKeyCredential), checking its shape only;
 * the ceremony checks everything else. Throws WebAuthnRefused('invalid_response').
 */
export function parseCredentialJson(raw: unknown, kind: 'registration'): RegistrationResponseJSON
export function parseCredentialJson(
  raw: unknown,
  kind: 'authentication',
): AuthenticationResponseJSON
export function parseCredentialJson(
  raw: unknown,
  kind: 'registration' | 'authentication',
): RegistrationResponseJSON | AuthenticationResponseJSON {
  let value: unknown = raw
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw)
    } catch {
      throw new WebAuthnRefused('invalid_response')
    }
  }
  if (!isRecord(value) || !isRecord(value.response)) throw new WebAuthnRefused('invalid_response')
  const { id, rawId, type, response } = value
  const fields =
    kind === 'registration'
      ? ['clientDataJSON', 'attestationObject']
      : ['clientDataJSON', 'authenticatorData', 'signature']
  const ok =
    typeof id === 'string' &&
    B64URL.test(id) &&
    id === rawId &&
    type === 'public-key' &&
    fields.every((f) => typeof response[f] === 'string' && B64URL.test(response[f] as string)) &&
    (response.userHandle === undefined ||
      response.userHandle === null ||
      (typeof response.userHandle === 'string' && B64URL.test(response.userHandle)))
  if (!ok) throw new WebAuthnRefused('invalid_response')
  const transports = Array.isArray(response.transports)
    ? response.transports.filter((t): t is string => typeof t === 'string' && TRANSPORTS.has(t))
    : []
  const base = {
    id,
    rawId: id,
    type: 'public-key' as const,
    clientExtensionResults: {},
    ...(typeof value.authenticatorAttachment === 'string' &&
    ['platform', 'cross-platform'].includes(value.authenticatorAttachment)
      ? { authenticatorAttachment: value.authenticatorAttachment as 'platform' | 'cross-platform' }
      : {}),
  }
  if (kind === 'registration')
    return {
      ...base,
      response: {
        clientDataJSON: response.clientDataJSON as string,
        attestationObject: response.attestationObject as string,
        transports: transports as RegistrationResponseJSON['response']['transports'],
      },
    }
  return {
    ...base,
    response: {
      clientDataJSON: response.clientDataJSON as string,
      authenticatorData: response.authenticatorData as string,
      signature: response.signature as string,
      ...(typeof response.userHandle === 'string' ? { userHandle: response.userHandle } : {}),
    },
  }
}

/** Maps a verification error of the library to a reason (its messages carry client data). */
function reasonOf(err: unknown): WebAuthnFailure {
  if (err instanceof WebAuthnRefused) return err.reason
  const e = err as { name?: string; message?: string }
  const m = String(e?.message ?? '')
  if (e?.name === 'UnexpectedRPIDHash') return 'rp_id_mismatch'
  if (/response type/.test(m)) return 'wrong_type'
  if (/origin/i.test(m)) return 'origin_mismatch'
  if (/challenge/.test(m)) return 'challenge_mismatch'
  if (/User presence|not present/.test(m)) return 'user_not_present'
  if (/alg/.test(m)) return 'unsupported_algorithm'
  return 'invalid_response'
}

export interface VerifiedRegistration {
  credentialId: string
  publicKey: Buffer
  counter: number
  transports: string[]
  deviceType: 'singleDevice' | 'multiDevice'
  backedUp: boolean
  aaguid: string
  userVerified: boolean
}

/** Checks an attestation ('none' or any self-consistent format) against the stored challenge. */
export async function verifyRegistration(
  rp: RelyingParty,
  response: RegistrationResponseJSON,
  expectedChallenge: string,
): Promise<VerifiedRegistration> {
  const { verifyRegistrationResponse } = await lib()
  let result: Awaited<ReturnType<typeof verifyRegistrationResponse>>
  try {
    result = await verifyRegistrationResponse({
      response,
      expectedChallenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      expectedType: 'webauthn.create',
      requireUserPresence: true,
      requireUserVerification: false,
      supportedAlgorithmIDs: SUPPORTED_ALGORITHMS,
    })
  } catch (err) {
    throw new WebAuthnRefused(reasonOf(err))
  }
  if (!result.verified) throw new WebAuthnRefused('invalid_signature')
  const info = result.registrationInfo
  return {
    credentialId: info.credential.id,
    publicKey: Buffer.from(info.credential.publicKey),
    counter: info.credential.counter,
    transports: response.response.transports ?? [],
    deviceType: info.credentialDeviceType,
    backedUp: info.credentialBackedUp,
    aaguid: info.aaguid,
    userVerified: info.userVerified,
  }
}

export interface VerifiedAssertion {
  newCounter: number
  deviceType: 'singleDevice' | 'multiDevice'
  backedUp: boolean
  userVerified: boolean
}

/**
 * Checks an assertion's client data, RP ID hash, flags and signature. The signature counter is
 * left to the caller (it compares and stores it atomically, and reports a regression apart).
 */
export async function verifyAssertion(
  rp: RelyingParty,
  response: AuthenticationResponseJSON,
  expectedChallenge: string,
  credential: StoredCredential,
): Promise<VerifiedAssertion> {
  const { verifyAuthenticationResponse } = await lib()
  let result: Awaited<ReturnType<typeof verifyAuthenticationResponse>>
  try {
    result = await verifyAuthenticationResponse({
      response,
      expectedChallenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      expectedType: 'webauthn.get',
      // Counter 0 here: the library's own counter check is replaced by the caller's.
      credential: {
        id: credential.credentialId,
        publicKey: new Uint8Array(credential.publicKey),
        counter: 0,
        transports: credential.transports,
      },
      requireUserVerification: false,
    })
  } catch (err) {
    throw new WebAuthnRefused(reasonOf(err))
  }
  if (!result.verified) throw new WebAuthnRefused('invalid_signature')
  const info = result.authenticationInfo
  return {
    newCounter: info.newCounter,
    deviceType: info.credentialDeviceType,
    backedUp: info.credentialBackedUp,
    userVerified: info.userVerified,
  }
}

/**
 * A counter that does not grow, when the authenticator keeps one (either value non-zero), may
 * mean a cloned authenticator (WebAuthn §7.2 step 21).
 */
export function counterRegressed(stored: number, presented: number) {
  return (stored > 0 || presented > 0) && presented <= stored
}

/**
 * RFC 8176 method of a passkey: `swk` (software-secured key) for a backup-eligible or backed-up
 * credential (a synced passkey), `hwk` (hardware-bound key) otherwise.
 */
export function amrOf(c: { deviceType: string; backedUp: boolean }): 'hwk' | 'swk' {
  return c.deviceType === 'multiDevice' || c.backedUp ? 'swk' : 'hwk'
}
