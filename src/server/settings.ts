import { resolve } from 'node:path'
import { defineSettings, parse, type ResolvedSoFar } from '../core/config/index.ts'
import { COMPONENTS, type ComponentName, parseComponents } from './topology.ts'

const listenUrl = (raw: unknown) => {
  const u = parse.url(['https:'])(raw)
  if (u.pathname !== '/' || u.search || u.username) throw new Error('must be https://HOST:PORT')
  return u
}

const peer = (name: string, what: string) => ({
  env: `DFLARE_PEER_${name.toUpperCase()}`,
  key: `peers.${name}`,
  doc: `dflare serve: ${what}, when ${name} does not run in this process.`,
  allowed: 'https://HOST:PORT',
  default: undefined as URL | undefined,
  defaultDoc: '(none)',
  parse: (raw: unknown) => (String(raw ?? '').trim() ? listenUrl(raw) : undefined),
})

export const serverSettings = defineSettings({
  listen: {
    env: 'DFLARE_LISTEN',
    key: 'listen',
    doc: 'HTTPS listener address (TLS only; port 0 picks a free port).',
    allowed: 'https://HOST:PORT',
    default: new URL('https://127.0.0.1:8443'),
    parse: listenUrl,
  },
  publicUrl: {
    env: 'DFLARE_PUBLIC_URL',
    key: 'publicUrl',
    doc: 'External base URL clients use (issuers are PUBLIC_URL/realms/{tenant}); defaults to the listen address.',
    allowed: 'https://HOST[:PORT]',
    default: (r: ResolvedSoFar) => new URL((r.listen as URL).origin),
    defaultDoc: 'the listen address',
    parse: parse.url(['https:']),
  },
  httpRedirectListen: {
    env: 'DFLARE_HTTP_REDIRECT_LISTEN',
    key: 'httpRedirectListen',
    doc: 'Optional plain-HTTP listener that only answers 308 redirects to the public HTTPS URL.',
    allowed: 'http://HOST:PORT, or empty for none',
    default: undefined as URL | undefined,
    defaultDoc: '(none)',
    parse: parse.optionalUrl(['http:']),
  },
  tlsMinVersion: {
    env: 'DFLARE_TLS_MIN_VERSION',
    key: 'tls.minVersion',
    doc: 'Lowest TLS version accepted by every listener and used by every client.',
    allowed: 'TLSv1.2, TLSv1.3',
    default: 'TLSv1.2' as 'TLSv1.2' | 'TLSv1.3',
    parse: parse.oneOf(['TLSv1.2', 'TLSv1.3'] as const),
  },
  tlsHosts: {
    env: 'DFLARE_TLS_HOSTS',
    key: 'tls.hosts',
    doc: 'Extra DNS names or IP addresses for the server certificate (the listen and public hosts are always included).',
    allowed: 'comma-separated host names or IPs',
    default: [] as string[],
    defaultDoc: '(none)',
    parse: parse.list(parse.string({ pattern: /^[A-Za-z0-9.:-]{1,253}$/ })),
  },
  bodyLimit: {
    env: 'DFLARE_BODY_LIMIT',
    key: 'http.bodyLimit',
    doc: 'Largest accepted request body in bytes; larger requests get 413.',
    allowed: 'integer 1024..16777216',
    default: 1_048_576,
    parse: parse.int(1024, 16_777_216),
  },
  shutdownGrace: {
    env: 'DFLARE_SHUTDOWN_GRACE',
    key: 'shutdownGrace',
    doc: 'How long shutdown waits for in-flight requests before closing connections.',
    allowed: 'duration 0s..5m (e.g. 10s)',
    default: 10_000,
    parse: parse.duration(0, 300_000),
  },
  components: {
    env: 'DFLARE_COMPONENTS',
    key: 'components',
    doc: `Components this process runs with dflare serve (dflare up always runs all of them): all, or a subset of ${COMPONENTS.join(', ')}.`,
    allowed: `all, or a comma-separated subset of ${COMPONENTS.join(', ')}`,
    default: COMPONENTS as readonly ComponentName[],
    defaultDoc: 'all',
    parse: parseComponents,
  },
  internalListen: {
    env: 'DFLARE_INTERNAL_LISTEN',
    key: 'internal.listen',
    doc: "dflare serve: mutual-TLS listener on which audit, authz and iam answer other components (each caller presents its service certificate and must be on the callee's allow-list).",
    allowed: 'https://HOST:PORT',
    default: new URL('https://127.0.0.1:8444'),
    parse: listenUrl,
  },
  peerPki: peer('pki', "the PKI host's public URL (serves /pki/crl and /pki/renew)"),
  peerAudit: peer('audit', "internal listener of audit's process"),
  peerAuthz: peer('authz', "internal listener of authz's process"),
  peerIam: peer('iam', "internal listener of iam's process"),
  identityDir: {
    env: 'DFLARE_IDENTITY_DIR',
    key: 'identity.dir',
    doc: 'dflare serve without the pki component: one directory per component of this process holding its service certificate (dflare pki issue --component NAME --out DIR/NAME); renewals are written back.',
    allowed: 'a directory path',
    default: (r: ResolvedSoFar) => resolve(String(r.home ?? '.dflare'), 'identity'),
    defaultDoc: '$DFLARE_HOME/identity',
    parse: parse.path(),
  },
})
