import { constants } from 'node:crypto'
import type { SecureContextOptions, TlsOptions } from 'node:tls'

/**
 * One TLS policy for every listener and client: TLS 1.2 minimum (1.3 preferred and negotiated
 * whenever the peer supports it), AEAD suites with ephemeral ECDHE only, no renegotiation, no
 * compression.
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

const SECURE_OPTIONS =
  constants.SSL_OP_NO_RENEGOTIATION |
  constants.SSL_OP_NO_COMPRESSION |
  constants.SSL_OP_CIPHER_SERVER_PREFERENCE

export function policyOptions(minVersion: TlsMinVersion = 'TLSv1.2'): SecureContextOptions {
  return {
    minVersion,
    maxVersion: 'TLSv1.3',
    ciphers: [...TLS13_SUITES, ...TLS12_SUITES].join(':'),
    ecdhCurve: 'X25519:P-256:P-384',
    honorCipherOrder: true,
    secureOptions: SECURE_OPTIONS,
  }
}

/** Options for an HTTPS/TLS listener presenting `cert`. */
export function serverTlsOptions(params: {
  key: string
  cert: string
  ca?: string
  minVersion?: TlsMinVersion
}): TlsOptions {
  return { ...policyOptions(params.minVersion), key: params.key, cert: params.cert, ca: params.ca }
}
