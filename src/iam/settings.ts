import { defineSettings, parse } from '../core/config/index.ts'

const MINUTE = 60_000

export const iamSettings = defineSettings({
  keyEncryptionKey: {
    env: 'DFLARE_IAM_KEK',
    key: 'iam.keyEncryptionKey',
    doc: 'Key-encryption key (32 bytes, base64) protecting signing keys and secrets at rest; when unset a 0600 file $DFLARE_HOME/iam/kek is created and used.',
    allowed: '44-character base64 of 32 random bytes, or empty',
    default: undefined as string | undefined,
    defaultDoc: '(file under $DFLARE_HOME/iam/kek)',
    parse: (raw: unknown) => {
      const v = parse.optionalString()(raw)
      if (v !== undefined && Buffer.from(v, 'base64').length !== 32)
        throw new Error('must be 32 bytes in base64')
      return v
    },
    secret: true,
  },
  keyEncryptionKeyFile: {
    env: 'DFLARE_IAM_KEK_FILE',
    key: 'iam.keyEncryptionKeyFile',
    doc: "File holding the identity key-encryption key (32 bytes base64, mode 0600), e.g. mounted by a secrets manager; iam.keyEncryptionKey takes precedence. Separate from the PKI key: neither module can read the other's secrets.",
    allowed: 'a file path',
    default: undefined as string | undefined,
    defaultDoc: '$DFLARE_HOME/iam/kek (generated)',
    parse: parse.path(),
  },
  accessTokenTtl: {
    env: 'DFLARE_IAM_ACCESS_TOKEN_TTL',
    key: 'iam.accessTokenTtl',
    doc: 'Lifetime of access tokens (JWT, RFC 9068); hard maximum 15 minutes.',
    allowed: 'duration 30s..15m',
    default: 5 * MINUTE,
    parse: parse.duration(30_000, 15 * MINUTE),
  },
  idTokenTtl: {
    env: 'DFLARE_IAM_ID_TOKEN_TTL',
    key: 'iam.idTokenTtl',
    doc: 'Lifetime of ID tokens.',
    allowed: 'duration 30s..15m',
    default: 5 * MINUTE,
    parse: parse.duration(30_000, 15 * MINUTE),
  },
  refreshTokenIdle: {
    env: 'DFLARE_IAM_REFRESH_TOKEN_IDLE',
    key: 'iam.refreshTokenIdle',
    doc: 'Sliding lifetime of a refresh token (each rotation gets this much more, up to the absolute maximum).',
    allowed: 'duration 1m..24h',
    default: 60 * MINUTE,
    parse: parse.duration(MINUTE, 24 * 60 * MINUTE),
  },
  refreshTokenMax: {
    env: 'DFLARE_IAM_REFRESH_TOKEN_MAX',
    key: 'iam.refreshTokenMax',
    doc: 'Absolute lifetime of a chain of rotated refresh tokens, counted from the first one.',
    allowed: 'duration 5m..30d',
    default: 8 * 60 * MINUTE,
    parse: parse.duration(5 * MINUTE, 30 * 24 * 60 * MINUTE),
  },
  keyRotationInterval: {
    env: 'DFLARE_IAM_KEY_ROTATION',
    key: 'iam.keyRotationInterval',
    doc: 'How long a realm signing key signs before the next key takes over.',
    allowed: 'duration 1h..365d',
    default: 30 * 24 * 60 * MINUTE,
    parse: parse.duration(60 * MINUTE, 365 * 24 * 60 * MINUTE),
  },
  keyOverlap: {
    env: 'DFLARE_IAM_KEY_OVERLAP',
    key: 'iam.keyOverlap',
    doc: 'How long a retired signing key stays published so tokens it signed still verify.',
    allowed: 'duration 15m..30d',
    default: 24 * 60 * MINUTE,
    parse: parse.duration(15 * MINUTE, 30 * 24 * 60 * MINUTE),
  },
  lockoutThreshold: {
    env: 'DFLARE_IAM_LOCKOUT_THRESHOLD',
    key: 'iam.lockout.threshold',
    doc: 'Consecutive failed logins (password or MFA) after which an account locks (NIST AC-7).',
    allowed: 'integer 3..100',
    default: 5,
    parse: parse.int(3, 100),
  },
  lockoutDuration: {
    env: 'DFLARE_IAM_LOCKOUT_DURATION',
    key: 'iam.lockout.duration',
    doc: 'How long a locked account stays locked unless an admin unlocks it.',
    allowed: 'duration 1m..24h',
    default: 15 * MINUTE,
    parse: parse.duration(MINUTE, 24 * 60 * MINUTE),
  },
  ipThrottleLimit: {
    env: 'DFLARE_IAM_IP_THROTTLE',
    key: 'iam.lockout.perIp',
    doc: 'Failed logins accepted from one source IP per lockout duration before it is throttled.',
    allowed: 'integer 5..10000',
    default: 50,
    parse: parse.int(5, 10_000),
  },
  providerCacheSize: {
    env: 'DFLARE_IAM_PROVIDER_CACHE',
    key: 'iam.providerCacheSize',
    doc: 'Most realm OIDC providers kept in memory at once (least recently used are dropped).',
    allowed: 'integer 1..100000',
    default: 256,
    parse: parse.int(1, 100_000),
  },
})
