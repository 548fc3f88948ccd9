import { constants } from 'node:crypto'
import https from 'node:https'
import tls from 'node:tls'
import { normalizeSerial } from './issuer.ts'
import { type SpiffeId, spiffeIdOfAltNames } from './spiffe.ts'

/**
 * The one TLS policy of every Dflare listener and client: TLS 1.2 minimum (1.3 only when
 * configured), TLS 1.3 preferred, ECDHE with AEAD ciphers only, no renegotiation, no
 * compression. Mutual TLS adds client certificates chained to the internal root, plus a
 * SPIFFE-identity allow-list and a revocation check after the handshake (verifyPeer).
 */
export type TlsMinVersion = 'TLSv1.2' | 'TLSv1.3'

// TLS 1.3 suites are all AEAD with (EC)DHE. For 1.2, only ECDHE + GCM/ChaCha20-Poly1305.
export const TLS13_SUITES = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
]
export const TLS12_SUITES = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
]
export const CIPHERS = [...TLS13_SUITES, ...TLS12_SUITES].join(':')

const SECURE_OPTIONS =
  constants.SSL_OP_NO_RENEGOTIATION |
  constants.SSL_OP_NO_COMPRESSION |
  constants.SSL_OP_CIPHER_SERVER_PREFERENCE

/** Key material a TLS endpoint presents and the roots it trusts (PEM). */
export interface TlsIdentity {
  /** Leaf followed by intermediates. */
  cert: string
  key: string
  /** Trusted root(s): the internal CA's ca.crt. */
  ca: string
}

/** The protocol/cipher part shared by every listener and client. */
export function policyOptions(minVersion: TlsMinVersion = 'TLSv1.2') {
  return {
    minVersion,
    maxVersion: 'TLSv1.3' as const,
    ciphers: CIPHERS,
    ecdhCurve: 'X25519:P-256:P-384',
    honorCipherOrder: true,
    secureOptions: SECURE_OPTIONS,
  }
}

const base = policyOptions

/** Options for an HTTPS/TLS listener presenting `cert` (no client certificates). */
export function serverTlsOptions(params: {
  key: string
  cert: string
  ca?: string
  minVersion?: TlsMinVersion
}): tls.TlsOptions {
  return { ...policyOptions(params.minVersion), key: params.key, cert: params.cert, ca: params.ca }
}

/** A listener that requires a client certificate chained to the internal root. */
export function mtlsServerOptions(
  identity: TlsIdentity,
  options: { minVersion?: TlsMinVersion } = {},
): tls.TlsOptions {
  return {
    ...serverTlsOptions({ ...identity, minVersion: options.minVersion }),
    requestCert: true,
    rejectUnauthorized: true,
  }
}

/** Secure-context options for `server.setSecureContext` after a certificate rotation. */
export function mtlsContextOptions(
  identity: TlsIdentity,
  options: { minVersion?: TlsMinVersion } = {},
): tls.SecureContextOptions {
  return { ...base(options.minVersion), ...identity }
}

/**
 * Client options presenting our certificate and accepting only a server whose certificate
 * chains to the internal root and carries one of the expected SPIFFE ids (host names are not
 * identities between components).
 */
export function mtlsClientOptions(
  identity: TlsIdentity,
  options: { minVersion?: TlsMinVersion; expectedServer: readonly string[] },
): tls.ConnectionOptions {
  return {
    ...base(options.minVersion ?? 'TLSv1.2'),
    cert: identity.cert,
    key: identity.key,
    ca: identity.ca,
    rejectUnauthorized: true,
    checkServerIdentity: serverIdentityCheck(options.expectedServer),
  }
}

export function serverIdentityCheck(expected: readonly string[]) {
  const allowed = new Set(expected)
  return (_host: string, cert: tls.PeerCertificate): Error | undefined => {
    const id = spiffeIdOfAltNames(cert.subjectaltname)
    if (!id || !allowed.has(id.uri))
      return Object.assign(new Error('server identity is not one of the expected SPIFFE ids'), {
        code: 'ERR_DFLARE_PEER_IDENTITY',
      })
    return undefined
  }
}

/** Where the current key material comes from; ServiceIdentity rotates it. */
export interface IdentitySource {
  current(): TlsIdentity
  /** Calls `fn` after each rotation; returns an unsubscribe function. */
  onChange(fn: (identity: TlsIdentity) => void): () => void
}

/**
 * An https.Agent for component-to-component calls. New connections always use the current
 * certificate (hot reload); pooled connections keep theirs until they close.
 */
export class MtlsAgent extends https.Agent {
  #context: tls.SecureContext
  readonly #unsubscribe: () => void
  readonly #minVersion: TlsMinVersion

  constructor(
    source: IdentitySource,
    options: {
      expectedServer: readonly string[]
      minVersion?: TlsMinVersion
      agent?: https.AgentOptions
    },
  ) {
    const minVersion = options.minVersion ?? 'TLSv1.2'
    super({
      keepAlive: true,
      ...options.agent,
      ...base(minVersion),
      rejectUnauthorized: true,
      checkServerIdentity: serverIdentityCheck(options.expectedServer),
    })
    this.#minVersion = minVersion
    this.#context = tls.createSecureContext(mtlsContextOptions(source.current(), { minVersion }))
    this.#unsubscribe = source.onChange((identity) => {
      this.#context = tls.createSecureContext(
        mtlsContextOptions(identity, { minVersion: this.#minVersion }),
      )
    })
  }

  override createConnection(
    options: Parameters<https.Agent['createConnection']>[0],
    callback?: Parameters<https.Agent['createConnection']>[1],
  ) {
    return super.createConnection(
      { ...options, secureContext: this.#context } as typeof options,
      callback,
    )
  }

  override destroy() {
    this.#unsubscribe()
    super.destroy()
  }
}

/** Keeps a server's certificate current: setSecureContext on every rotation. */
export function reloadOnRotation(
  server: tls.Server,
  source: IdentitySource,
  options: { minVersion?: TlsMinVersion } = {},
): () => void {
  return source.onChange((identity) =>
    server.setSecureContext(mtlsContextOptions(identity, options)),
  )
}

/** Answers whether a serial is revoked; `unknown` (no fresh CRL) must be treated as refusal. */
export interface RevocationChecker {
  status(serialHex: string): 'good' | 'revoked' | 'unknown'
}

export interface PeerPolicy {
  /** SPIFFE ids allowed to call this endpoint. */
  allowed: readonly string[] | ReadonlySet<string>
  revocation: RevocationChecker
  now?: () => Date
}

export type PeerCheck =
  | { ok: true; id: SpiffeId; serial: string }
  | {
      ok: false
      reason:
        | 'no_certificate'
        | 'untrusted'
        | 'expired'
        | 'no_identity'
        | 'identity_not_allowed'
        | 'revoked'
        | 'revocation_unknown'
    }

/** Checks an mTLS peer after the handshake: chain, validity, identity allow-list, revocation. */
export function verifyPeer(socket: tls.TLSSocket, policy: PeerPolicy): PeerCheck {
  const cert = socket.getPeerCertificate(false)
  if (!cert?.raw) return { ok: false, reason: 'no_certificate' }
  if (!socket.authorized) return { ok: false, reason: 'untrusted' }
  // OpenSSL checked validity at handshake; resumed sessions are not re-verified, so check again.
  const now = (policy.now?.() ?? new Date()).getTime()
  if (Date.parse(cert.valid_to) <= now || Date.parse(cert.valid_from) > now)
    return { ok: false, reason: 'expired' }
  const id = spiffeIdOfAltNames(cert.subjectaltname)
  if (!id) return { ok: false, reason: 'no_identity' }
  const allowed = policy.allowed instanceof Set ? policy.allowed : new Set(policy.allowed)
  if (!allowed.has(id.uri)) return { ok: false, reason: 'identity_not_allowed' }
  const serial = normalizeSerial(cert.serialNumber)
  const status = policy.revocation.status(serial)
  if (status === 'revoked') return { ok: false, reason: 'revoked' }
  if (status !== 'good') return { ok: false, reason: 'revocation_unknown' }
  return { ok: true, id, serial }
}

/**
 * Enforces the peer policy on every connection of an mTLS server: a refused peer's socket is
 * destroyed before any request on it is read. `recheck()` (call it after each CRL refresh)
 * closes open connections whose peer has since been revoked or expired, so a kept-alive
 * connection does not outlive a revocation. `onRefused` gets the reason (for logs/metrics).
 * `policy` may be chosen per connection (e.g. by the TLS server name the client sent).
 */
export function enforcePeerPolicy(
  server: tls.Server,
  policy: PeerPolicy | ((socket: tls.TLSSocket) => PeerPolicy | undefined),
  onRefused?: (reason: string, socket: tls.TLSSocket) => void,
): { recheck(): number } {
  const open = new Set<tls.TLSSocket>()
  const refuse = (socket: tls.TLSSocket): boolean => {
    // A listener shared by several components picks the policy of the one the client named
    // (TLS server name); a connection that names none of them is refused.
    const p = typeof policy === 'function' ? policy(socket) : policy
    const check = p
      ? verifyPeer(socket, p)
      : ({ ok: false, reason: 'unknown_server_name' } as const)
    if (check.ok) return false
    onRefused?.(check.reason, socket)
    socket.destroy()
    return true
  }
  server.prependListener('secureConnection', (socket: tls.TLSSocket) => {
    if (refuse(socket)) return
    open.add(socket)
    socket.once('close', () => open.delete(socket))
  })
  return {
    recheck() {
      let closed = 0
      for (const socket of open) if (refuse(socket)) closed++
      return closed
    },
  }
}
