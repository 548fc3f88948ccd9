import { problems } from '../../core/errors.ts'
import { PASSKEY_COLUMNS, type PasskeyInfo, toPasskeyInfo } from '../passkeys.ts'
import { type AdminActor, type AdminDeps, change } from './context.ts'

/** A user's WebAuthn credential as the API shows it: no public key, no credential id. */
export const webauthnCredentialSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    deviceType: { enum: ['singleDevice', 'multiDevice'] },
    backedUp: { type: 'boolean' },
    aaguid: { type: 'string' },
    transports: { type: 'array', items: { type: 'string' } },
    createdAt: { type: 'string', format: 'date-time' },
    lastUsedAt: { type: ['string', 'null'], format: 'date-time' },
  },
} as const

export async function listWebAuthnCredentials(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  userId: string,
): Promise<PasskeyInfo[]> {
  const { rows } = await deps.db.query<Parameters<typeof toPasskeyInfo>[0]>(
    `SELECT ${PASSKEY_COLUMNS} FROM iam.webauthn_credentials
     WHERE realm = $1 AND user_id = $2 ORDER BY created_at, id`,
    [realm, userId],
  )
  return rows.map(toPasskeyInfo)
}

export async function getWebAuthnCredential(
  deps: Pick<AdminDeps, 'db'>,
  realm: string,
  userId: string,
  id: string,
): Promise<PasskeyInfo> {
  const found = (await listWebAuthnCredentials(deps, realm, userId)).find((c) => c.id === id)
  if (!found) throw problems.notFound('No such WebAuthn credential')
  return found
}

/**
 * An administrator removes a user's passkey (lost or compromised authenticator). When it was the
 * user's last second factor, the next login asks for enrolment again if the realm requires MFA.
 */
export async function deleteWebAuthnCredential(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  userId: string,
  id: string,
) {
  await change(
    deps,
    who,
    realm,
    {
      type: 'iam.webauthn.deleted',
      action: 'iam:DeleteWebAuthnCredential',
      resource: { type: 'WebAuthnCredential', id },
    },
    async (tx) => {
      const r = await tx.query(
        'DELETE FROM iam.webauthn_credentials WHERE realm = $1 AND user_id = $2 AND id = $3',
        [realm, userId, id],
      )
      if (r.rowCount === 0) throw problems.notFound('No such WebAuthn credential')
    },
    () => ({ user: userId }),
  )
}
