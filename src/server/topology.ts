import { X509Certificate } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, SettingValueError } from '../core/config/index.ts'
import { componentId, spiffeIdOfAltNames } from '../pki/spiffe.ts'
import type { Config } from './config.ts'

/**
 * Which components a process runs, which of them it reaches over the network, and with which
 * identities. `dflare up` runs every component in one process; `dflare serve --components …`
 * runs a subset and reaches the others through their internal mTLS listeners (see internal.ts).
 */
export const COMPONENTS = ['pki', 'audit', 'authz', 'iam', 'isolation', 'gateway'] as const
export type ComponentName = (typeof COMPONENTS)[number]

/** Components that serve calls from other components on the internal listener. */
export const SERVED = ['audit', 'authz', 'iam'] as const
export type ServedComponent = (typeof SERVED)[number]

/**
 * What each component calls on others. A dependency that is not in the process must have a
 * peer URL. The callee's allow-list (declared next to its internal routes) must admit the caller;
 * a test checks the two agree.
 */
export const NEEDS: Readonly<Record<ComponentName, readonly ServedComponent[]>> = {
  pki: ['audit'],
  audit: [],
  authz: [],
  iam: ['audit'],
  isolation: ['audit', 'authz', 'iam'],
  gateway: ['audit', 'authz', 'iam'],
}

export function isServed(name: string): name is ServedComponent {
  return (SERVED as readonly string[]).includes(name)
}

/** Parses `all` or a comma-separated subset; the order of the result is COMPONENTS' order. */
export function parseComponents(raw: unknown): readonly ComponentName[] {
  const items = (Array.isArray(raw) ? raw.map(String) : String(raw ?? '').split(','))
    .map((s) => s.trim())
    .filter(Boolean)
  if (items.length === 0) throw new SettingValueError('must name at least one component')
  if (items.length === 1 && items[0] === 'all') return COMPONENTS
  for (const item of items)
    if (!(COMPONENTS as readonly string[]).includes(item))
      throw new SettingValueError(
        item === 'all'
          ? 'mixes "all" with other names'
          : `names unknown component ${JSON.stringify(item.slice(0, 40))}`,
      )
  return COMPONENTS.filter((c) => items.includes(c))
}

/** The TLS server name a client sends to reach `component` on a shared internal listener. */
export function peerServerName(component: string, trustDomain: string): string {
  return `${component}.${trustDomain}`
}

/** Settings key and env var of each peer URL. */
export const PEER_SETTING = {
  pki: { env: 'DFLARE_PEER_PKI', key: 'peers.pki', field: 'peerPki' },
  audit: { env: 'DFLARE_PEER_AUDIT', key: 'peers.audit', field: 'peerAudit' },
  authz: { env: 'DFLARE_PEER_AUTHZ', key: 'peers.authz', field: 'peerAuthz' },
  iam: { env: 'DFLARE_PEER_IAM', key: 'peers.iam', field: 'peerIam' },
} as const

export function peerUrl(config: Config, peer: keyof typeof PEER_SETTING): URL | undefined {
  return config.server[PEER_SETTING[peer].field]
}

export interface Topology {
  local: ReadonlySet<ComponentName>
  /** Served components this process calls remotely, with the URL of their internal listener. */
  remote: ReadonlyMap<ServedComponent, URL>
  /** The PKI host's public URL when pki runs elsewhere (CRL, renewal). */
  pkiUrl: URL | undefined
  /** Local components that need a service identity (they call a peer or serve one). */
  identities: readonly ComponentName[]
  /** Whether this process opens the internal mTLS listener. */
  internal: boolean
  /** Peer settings given for components that run here (ignored; worth a warning). */
  ignoredPeers: string[]
}

/**
 * Resolves and checks a process's topology before anything is opened. Every problem is a
 * ConfigError: one line naming the setting, exit 2.
 */
export function resolveTopology(
  config: Config,
  components: readonly ComponentName[],
  options: { internal: boolean },
): Topology {
  const local = new Set(components)
  const all = COMPONENTS.every((c) => local.has(c))
  if (!all && !config.core.databaseUrl)
    throw new ConfigError(
      'DATABASE_URL (database.url): required when a process runs a subset of the components: every process of a deployment shares one PostgreSQL (the embedded database belongs to one process)',
    )
  const remote = new Map<ServedComponent, URL>()
  const ignoredPeers: string[] = []
  for (const c of components)
    for (const dep of NEEDS[c]) {
      if (local.has(dep) || remote.has(dep)) continue
      const url = peerUrl(config, dep)
      if (!url)
        throw new ConfigError(
          `${PEER_SETTING[dep].env} (${PEER_SETTING[dep].key}): required because ${c} runs in this process and ${dep} does not; set it to the internal listener of ${dep}'s process (https://HOST:PORT)`,
        )
      remote.set(dep, url)
    }
  for (const peer of Object.keys(PEER_SETTING) as (keyof typeof PEER_SETTING)[])
    if (local.has(peer) && peerUrl(config, peer)) ignoredPeers.push(PEER_SETTING[peer].env)
  const pkiUrl = local.has('pki') ? undefined : config.server.peerPki
  if (!local.has('pki') && !pkiUrl)
    throw new ConfigError(
      `${PEER_SETTING.pki.env} (${PEER_SETTING.pki.key}): required because pki does not run in this process; set it to the PKI host's public URL (https://HOST:PORT), which serves /pki/crl and /pki/renew`,
    )
  // Peers share the database, so with the embedded one (a single process) nobody could call.
  const internal = options.internal && !!config.core.databaseUrl && SERVED.some((s) => local.has(s))
  const identities = components.filter(
    (c) =>
      NEEDS[c].some((dep) => remote.has(dep)) ||
      (internal && isServed(c)) ||
      // Without a local CA, the public listener presents a component certificate.
      !local.has('pki'),
  )
  if (!local.has('pki')) {
    for (const c of identities) checkIdentityDir(config, join(config.server.identityDir, c), c)
    // One process trusts one root: every directory must hold the same ca.crt.
    const roots = new Set(
      identities.map(
        (c) =>
          new X509Certificate(readFileSync(join(config.server.identityDir, c, 'ca.crt')))
            .fingerprint256,
      ),
    )
    if (roots.size > 1)
      throw new ConfigError(
        `DFLARE_IDENTITY_DIR (identity.dir): the component directories in ${config.server.identityDir} hold different ca.crt files; issue them all from the same PKI host`,
      )
  }
  return { local, remote, pkiUrl, identities, internal, ignoredPeers }
}

/** A component's certificate directory must hold a current certificate for that component. */
function checkIdentityDir(config: Config, dir: string, component: ComponentName) {
  const setting = 'DFLARE_IDENTITY_DIR (identity.dir)'
  const issue = `on the PKI host run: dflare pki issue --component ${component} --out DIR, then copy DIR to ${dir}`
  for (const f of ['cert.pem', 'key.pem', 'ca.crt'])
    if (!existsSync(join(dir, f)))
      throw new ConfigError(`${setting}: no ${f} for component ${component} in ${dir}; ${issue}`)
  try {
    new X509Certificate(readFileSync(join(dir, 'ca.crt')))
  } catch {
    throw new ConfigError(`${setting}: ${join(dir, 'ca.crt')} is not a PEM certificate`)
  }
  let cert: X509Certificate
  try {
    cert = new X509Certificate(readFileSync(join(dir, 'cert.pem')))
  } catch {
    throw new ConfigError(`${setting}: ${join(dir, 'cert.pem')} is not a PEM certificate`)
  }
  const expected = componentId(config.pki.trustDomain, component)
  const id = spiffeIdOfAltNames(cert.subjectAltName)
  if (id?.uri !== expected)
    throw new ConfigError(
      `${setting}: ${join(dir, 'cert.pem')} is ${id?.uri ?? 'not a service certificate'}, expected ${expected}`,
    )
  if (Date.parse(cert.validTo) <= Date.now())
    throw new ConfigError(
      `${setting}: the certificate of ${component} in ${dir} expired at ${new Date(cert.validTo).toISOString()} and cannot renew itself; ${issue}`,
    )
}
