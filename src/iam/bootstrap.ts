import { randomBytes } from 'node:crypto'
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { createClient } from './admin/clients.ts'
import type { AdminActor, AdminDeps } from './admin/context.ts'
import { createRealm } from './admin/realms.ts'
import { createUser } from './admin/users.ts'

export const PLATFORM_REALM = 'platform'
export const ADMIN_CLIENT_ID = 'platform-admin'
export const CLI_CLIENT_ID = 'dflare-cli'
export const ADMIN_USERNAME = 'admin'

/** The contract file `$DFLARE_HOME/bootstrap.json` (mode 0600). `ca_cert` is a file path. */
export interface BootstrapFile {
  issuer: string
  client_id: string
  client_secret: string
  admin_username: string
  admin_password: string
  /** Path of the internal CA certificate, `$DFLARE_HOME/pki/ca.crt`. */
  ca_cert: string
}

const SYSTEM: AdminActor = { actor: { kind: 'system', id: 'bootstrap' } }

/**
 * First start: creates the platform realm, the platform-admin service client, the public CLI
 * client and a first admin who must enrol MFA at first login, and writes bootstrap.json.
 * Later starts find the realm and change nothing. Secrets go only to the file, never the log.
 */
export async function bootstrap(opts: {
  deps: AdminDeps
  home: string
  issuer: string
  ensureKeys: (realm: string) => Promise<unknown>
  log?: Logger
}): Promise<{ created: boolean; path: string }> {
  const { deps, home, log } = opts
  const path = join(home, 'bootstrap.json')
  const exists = await deps.db.query('SELECT 1 FROM iam.realms WHERE id = $1', [PLATFORM_REALM])
  if (exists.rows.length === 1) {
    await opts.ensureKeys(PLATFORM_REALM)
    log?.info({ path }, 'iam: platform realm present; bootstrap credentials are in the file')
    return { created: false, path }
  }
  const adminPassword = randomBytes(18).toString('base64url')
  await createRealm(deps, SYSTEM, {
    id: PLATFORM_REALM,
    displayName: 'Platform operator',
    mfaPolicy: 'admins',
  })
  await opts.ensureKeys(PLATFORM_REALM)
  const { clientSecret } = await createClient(deps, SYSTEM, PLATFORM_REALM, {
    clientId: ADMIN_CLIENT_ID,
    name: 'Platform administration automation',
    serviceAccount: true,
  })
  await createClient(deps, SYSTEM, PLATFORM_REALM, {
    clientId: CLI_CLIENT_ID,
    name: 'Dflare CLI',
    authMethod: 'none',
    redirectUris: ['http://127.0.0.1/callback'],
    grantTypes: [
      'authorization_code',
      'refresh_token',
      'urn:ietf:params:oauth:grant-type:device_code',
      'urn:ietf:params:oauth:grant-type:token-exchange',
    ],
  })
  await createUser(deps, SYSTEM, PLATFORM_REALM, {
    username: ADMIN_USERNAME,
    displayName: 'Platform administrator',
    isAdmin: true,
    mustEnrollMfa: true,
    password: adminPassword,
  })
  const file: BootstrapFile = {
    issuer: opts.issuer,
    client_id: ADMIN_CLIENT_ID,
    client_secret: clientSecret!,
    admin_username: ADMIN_USERNAME,
    admin_password: adminPassword,
    ca_cert: join(home, 'pki', 'ca.crt'),
  }
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 })
    await chmod(tmp, 0o600)
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  log?.info({ path }, 'iam: created the platform realm; bootstrap credentials written')
  return { created: true, path }
}

export async function readBootstrap(home: string): Promise<BootstrapFile> {
  return JSON.parse(await readFile(join(home, 'bootstrap.json'), 'utf8')) as BootstrapFile
}
