import { defineSettings, parse } from '../core/config/index.ts'

const KEK_B64 = /^[A-Za-z0-9+/_-]{43}=?$/

export const pkiSettings = defineSettings({
  trustDomain: {
    env: 'DFLARE_PKI_TRUST_DOMAIN',
    key: 'pki.trustDomain',
    doc: 'SPIFFE trust domain of every service identity (spiffe://TRUST_DOMAIN/component/NAME).',
    allowed: 'a lower-case DNS name',
    default: 'dflare.local',
    parse: parse.string({
      pattern: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
    }),
  },
  kek: {
    env: 'DFLARE_PKI_KEK',
    key: 'pki.kek',
    doc: 'Key-encryption key for the CA private keys: 32 random bytes in base64 (openssl rand -base64 32). Takes precedence over pki.kekFile.',
    allowed: '32 bytes, base64',
    default: undefined as string | undefined,
    defaultDoc: '(none)',
    parse: parse.string({ pattern: KEK_B64 }),
    secret: true,
  },
  kekFile: {
    env: 'DFLARE_PKI_KEK_FILE',
    key: 'pki.kekFile',
    doc: 'File holding the key-encryption key (32 bytes base64, mode 0600). When neither pki.kek nor this is set, $DFLARE_HOME/kek is generated on first boot.',
    allowed: 'a file path',
    default: undefined as string | undefined,
    defaultDoc: '$DFLARE_HOME/kek (generated)',
    parse: parse.path(),
  },
  serviceCertTtl: {
    env: 'DFLARE_PKI_SERVICE_CERT_TTL',
    key: 'pki.serviceCertTtl',
    doc: 'Lifetime of service (component and workload) certificates; they renew at two-thirds of it.',
    allowed: 'duration 5m..30d',
    default: 86_400_000,
    parse: parse.duration(300_000, 30 * 86_400_000),
  },
  crlValidity: {
    env: 'DFLARE_PKI_CRL_VALIDITY',
    key: 'pki.crlValidity',
    doc: 'How long a published CRL stays valid (its nextUpdate); servers refuse all peers once their CRL is older.',
    allowed: 'duration 1m..7d',
    default: 3_600_000,
    parse: parse.duration(60_000, 7 * 86_400_000),
  },
  crlRefresh: {
    env: 'DFLARE_PKI_CRL_REFRESH',
    key: 'pki.crlRefresh',
    doc: 'How often mTLS servers fetch the CRL; a revocation is enforced within this interval.',
    allowed: 'duration 1s..1h',
    default: 60_000,
    parse: parse.duration(1000, 3_600_000),
  },
  expiryWarning: {
    env: 'DFLARE_PKI_EXPIRY_WARNING',
    key: 'pki.expiryWarning',
    doc: 'Certificates closer than this to their not-after are reported as near expiry (metric and event).',
    allowed: 'duration 1m..90d',
    default: 7 * 86_400_000,
    parse: parse.duration(60_000, 90 * 86_400_000),
  },
})
