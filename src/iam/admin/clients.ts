import { randomBytes } from 'node:crypto'
import { problems } from '../../core/errors.ts'
import { clientSecretAad } from '../adapter.ts'
import {
  type AdminActor,
  type AdminDeps,
  Check,
  change,
  isUniqueViolation,
  ref,
  uid,
} from './context.ts'
import type { KeysetPage } from './directory.ts'

/**
 * OAuth clients of a realm. A service account is a confidential client allowed the
 * client_credentials grant; its subject in tokens is its client id.
 */
export type ClientAuthMethod =
  | 'client_secret_basic'
  | 'private_key_jwt'
  | 'tls_client_auth'
  | 'none'

export interface ClientInput {
  clientId?: string
  name: string
  serviceAccount?: boolean
  authMethod?: ClientAuthMethod
  redirectUris?: string[]
  postLogoutRedirectUris?: string[]
  grantTypes?: string[]
  /** JWKS for private_key_jwt. */
  jwks?: { keys: Record<string, unknown>[] }
  /** Certificate subject DN for tls_client_auth. */
  tlsSubjectDn?: string
  backchannelLogoutUri?: string
  /** Third-party clients get a consent page; first-party ones (default) do not. */
  firstParty?: boolean
}

export interface Client {
  clientId: string
  name: string
  serviceAccount: boolean
  metadata: Record<string, unknown>
  createdAt: string
}

export const createClientSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    clientId: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{2,63}$' },
    name: { type: 'string', maxLength: 200 },
    serviceAccount: { type: 'boolean' },
    authMethod: { enum: ['client_secret_basic', 'private_key_jwt', 'tls_client_auth', 'none'] },
    redirectUris: { type: 'array', items: { type: 'string', format: 'uri' }, maxItems: 20 },
    postLogoutRedirectUris: {
      type: 'array',
      items: { type: 'string', format: 'uri' },
      maxItems: 20,
    },
    grantTypes: { type: 'array', items: { type: 'string' } },
    jwks: { type: 'object' },
    tlsSubjectDn: { type: 'string' },
    backchannelLogoutUri: { type: 'string', format: 'uri' },
    firstParty: { type: 'boolean' },
  },
} as const

const GRANTS = new Set([
  'authorization_code',
  'refresh_token',
  'client_credentials',
  'urn:ietf:params:oauth:grant-type:device_code',
  'urn:ietf:params:oauth:grant-type:token-exchange',
])
const CLIENT_ID = /^[a-z0-9][a-z0-9_-]{2,63}$/

function metadataOf(input: ClientInput) {
  const c = new Check()
  c.text('name', input.name)
  if (input.clientId !== undefined) c.text('clientId', input.clientId, { pattern: CLIENT_ID })
  const service = input.serviceAccount === true
  const method = input.authMethod ?? (service ? 'client_secret_basic' : 'none')
  if (!['client_secret_basic', 'private_key_jwt', 'tls_client_auth', 'none'].includes(method))
    c.errors.push({ field: 'authMethod', message: 'is not allowed' })
  if (service && method === 'none')
    c.errors.push({ field: 'authMethod', message: 'a service account must authenticate' })
  const grants =
    input.grantTypes ??
    (service
      ? ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange']
      : ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:token-exchange'])
  for (const g of grants)
    if (!GRANTS.has(g)) c.errors.push({ field: 'grantTypes', message: `${g} is not allowed` })
  if (method === 'none' && grants.includes('client_credentials'))
    c.errors.push({ field: 'grantTypes', message: 'public clients cannot use client_credentials' })
  if (method === 'private_key_jwt' && !input.jwks?.keys?.length)
    c.errors.push({ field: 'jwks', message: 'is required for private_key_jwt' })
  if (method === 'tls_client_auth' && !input.tlsSubjectDn)
    c.errors.push({ field: 'tlsSubjectDn', message: 'is required for tls_client_auth' })
  const redirects = input.redirectUris ?? []
  for (const u of [...redirects, ...(input.postLogoutRedirectUris ?? [])]) {
    const parsed = URL.parse(u)
    const loopback =
      parsed?.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(parsed.hostname)
    if (!parsed || (parsed.protocol !== 'https:' && !loopback) || parsed.hash)
      c.errors.push({
        field: 'redirectUris',
        message: `${u} must be https (or http on loopback) without fragment`,
      })
  }
  if (input.backchannelLogoutUri !== undefined) {
    // The OP posts logout tokens here with TLS only; no fragment, no credentials in the URI.
    const u = URL.parse(String(input.backchannelLogoutUri))
    if (u?.protocol !== 'https:' || u.hash || u.username || u.password)
      c.errors.push({
        field: 'backchannelLogoutUri',
        message: 'must be an https URI without fragment or credentials',
      })
  }
  if (grants.includes('authorization_code') && redirects.length === 0)
    c.errors.push({ field: 'redirectUris', message: 'is required for authorization_code' })
  c.done()
  const loopbackOnly =
    redirects.length > 0 && redirects.every((u) => new URL(u).protocol === 'http:')
  return {
    method,
    metadata: {
      client_name: input.name,
      token_endpoint_auth_method: method,
      grant_types: grants,
      response_types: grants.includes('authorization_code') ? ['code'] : [],
      redirect_uris: redirects,
      post_logout_redirect_uris: input.postLogoutRedirectUris ?? [],
      // Native apps (the CLI) redirect to http loopback, which oidc-provider allows for 'native'.
      application_type: loopbackOnly ? 'native' : 'web',
      first_party: input.firstParty ?? true,
      ...(input.jwks ? { jwks: input.jwks } : {}),
      ...(input.tlsSubjectDn ? { tls_client_auth_subject_dn: input.tlsSubjectDn } : {}),
      ...(input.backchannelLogoutUri
        ? {
            backchannel_logout_uri: input.backchannelLogoutUri,
            backchannel_logout_session_required: true,
          }
        : {}),
    } as Record<string, unknown>,
  }
}

/** Registers a client; returns its secret once (client_secret_basic only), never stored in clear. */
export async function createClient(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  input: ClientInput,
): Promise<{ client: Client; clientSecret?: string }> {
  const { method, metadata } = metadataOf(input)
  const clientId = input.clientId ?? `c-${randomBytes(10).toString('hex')}`
  const secret =
    method === 'client_secret_basic' ? randomBytes(32).toString('base64url') : undefined
  const sealed = secret ? deps.sealer.seal(secret, clientSecretAad(realm, clientId)) : null
  const service = input.serviceAccount === true
  try {
    const client = await change(
      deps,
      who,
      realm,
      {
        type: 'iam.client.created',
        action: service ? 'iam:CreateServiceAccount' : 'iam:CreateClient',
        resource: { type: service ? 'ServiceAccount' : 'Client', id: clientId },
      },
      async (tx) => {
        const { rows } = await tx.query<{ created_at: Date }>(
          `INSERT INTO iam.clients (realm, client_id, name, service_account, secret_enc, metadata)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
          [realm, clientId, input.name, service, sealed, metadata],
        )
        if (service)
          await deps.entities.upsert(tx, [
            {
              uid: uid.serviceAccount(realm, clientId),
              tenant: realm,
              attrs: { tenant: ref(uid.tenant(realm)), name: input.name },
              parents: [uid.tenant(realm)],
            },
          ])
        return {
          clientId,
          name: input.name,
          serviceAccount: service,
          metadata,
          createdAt: rows[0]!.created_at.toISOString(),
        }
      },
      () => ({ authMethod: method }),
    )
    return { client, clientSecret: secret }
  } catch (err) {
    if (isUniqueViolation(err)) throw problems.conflict('That client id is taken in this realm')
    throw err
  }
}

export async function rotateClientSecret(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  clientId: string,
): Promise<string> {
  const secret = randomBytes(32).toString('base64url')
  await change(
    deps,
    who,
    realm,
    {
      type: 'iam.client.secret_rotated',
      action: 'iam:RotateClientSecret',
      resource: { type: 'Client', id: clientId },
    },
    async (tx) => {
      const r = await tx.query(
        `UPDATE iam.clients SET secret_enc = $3 WHERE realm = $1 AND client_id = $2
         AND metadata->>'token_endpoint_auth_method' = 'client_secret_basic'`,
        [realm, clientId, deps.sealer.seal(secret, clientSecretAad(realm, clientId))],
      )
      if (r.rowCount === 0) throw problems.notFound('No such client with a secret')
    },
  )
  return secret
}

/** A realm's clients by client id (bytewise, as cursors compare), optionally only service accounts. */
export async function listClients(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  options: KeysetPage & { serviceAccounts?: boolean } = {},
): Promise<Client[]> {
  const { rows } = await deps.db.query<{
    client_id: string
    name: string
    service_account: boolean
    metadata: Record<string, unknown>
    created_at: Date
  }>(
    `SELECT client_id, name, service_account, metadata, created_at FROM iam.clients
      WHERE realm = $1 AND ($2::boolean IS NULL OR service_account = $2)
        AND ($3::text IS NULL OR client_id COLLATE "C" > $3)
      ORDER BY client_id COLLATE "C" LIMIT $4`,
    [realm, options.serviceAccounts ?? null, options.after ?? null, options.limit ?? null],
  )
  return rows.map((r) => ({
    clientId: r.client_id,
    name: r.name,
    serviceAccount: r.service_account,
    metadata: r.metadata,
    createdAt: r.created_at.toISOString(),
  }))
}

export async function deleteClient(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  clientId: string,
) {
  await change(
    deps,
    who,
    realm,
    {
      type: 'iam.client.deleted',
      action: 'iam:DeleteClient',
      resource: { type: 'Client', id: clientId },
    },
    async (tx) => {
      const r = await tx.query('DELETE FROM iam.clients WHERE realm = $1 AND client_id = $2', [
        realm,
        clientId,
      ])
      if (r.rowCount === 0) throw problems.notFound('No such client')
      await tx.query(
        `DELETE FROM iam.oidc_payloads WHERE realm = $1 AND payload->>'clientId' = $2`,
        [realm, clientId],
      )
      await deps.entities.remove(tx, [uid.serviceAccount(realm, clientId)])
    },
  )
}
