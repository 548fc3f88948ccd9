import type { EntityUid } from '../authz/contract.ts'

/** The one scope a credential operates in (RFC 8693 exchange only narrows it). */
export type CredentialScope =
  | { kind: 'org' }
  | { kind: 'domain'; id: string }
  | { kind: 'project'; id: string }

/** An authenticated caller, as established by the gateway for one request. */
export interface Principal {
  kind: 'user' | 'service'
  /** Cedar entity of the caller (`Dflare::User::"realm/sub"`, `Dflare::ServiceAccount::…`). */
  uid: EntityUid
  /** Realm (tenant) that authenticated the caller; `platform` for operators. */
  realm: string
  /** Subject id inside the realm (pseudonymous; never an email). */
  subject: string
  scope: CredentialScope
  amr: string[]
  authTime?: number
  /** Token or session identifiers, for revocation and audit correlation. */
  sid?: string
  jti?: string
  clientId?: string
  via: 'bearer' | 'mtls'
}

export const NAMESPACE = 'Dflare'

export function userUid(realm: string, subject: string): EntityUid {
  return { type: `${NAMESPACE}::User`, id: `${realm}/${subject}` }
}

export function serviceAccountUid(realm: string, clientId: string): EntityUid {
  return { type: `${NAMESPACE}::ServiceAccount`, id: `${realm}/${clientId}` }
}

/** Cedar uid of a tenant-owned resource: ids are qualified by their tenant. */
export function resourceUid(type: string, tenant: string, id: string): EntityUid {
  return { type: `${NAMESPACE}::${type}`, id: `${tenant}/${id}` }
}

export function tenantUid(tenant: string): EntityUid {
  return { type: `${NAMESPACE}::Tenant`, id: tenant }
}
