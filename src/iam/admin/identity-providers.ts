import { problems } from '../../core/errors.ts'
import { type AdminActor, type AdminDeps, Check, change, ID, isUniqueViolation } from './context.ts'

/** An upstream OIDC identity provider a realm trusts (SSO federation). */
export interface IdentityProviderInput {
  alias: string
  issuer: string
  clientId: string
  clientSecret?: string
  /** Verified email domains whose users are routed to this IdP (home-realm discovery). */
  emailDomains?: string[]
  /** Claim holding the upstream groups; default `groups`. */
  groupsClaim?: string
  /** Upstream group name -> local group id. */
  groupMapping?: Record<string, string>
}

export const createIdentityProviderSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['alias', 'issuer', 'clientId'],
  properties: {
    alias: { type: 'string', pattern: '^[a-z][a-z0-9-]{0,62}$' },
    issuer: { type: 'string', format: 'uri' },
    clientId: { type: 'string', maxLength: 200 },
    clientSecret: { type: 'string', writeOnly: true, maxLength: 500 },
    emailDomains: { type: 'array', items: { type: 'string' }, maxItems: 50 },
    groupsClaim: { type: 'string', maxLength: 100 },
    groupMapping: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const

export const idpSecretAad = (realm: string, alias: string) =>
  `iam.identity_providers/${realm}/${alias}`
const DOMAIN = /^(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}$/

export async function createIdentityProvider(
  deps: AdminDeps,
  who: AdminActor,
  realm: string,
  input: IdentityProviderInput,
) {
  const c = new Check()
  const alias = c.text('alias', input.alias, { pattern: /^[a-z][a-z0-9-]{0,62}$/ })
  c.text('clientId', input.clientId)
  const issuer = URL.parse(input.issuer)
  if (issuer?.protocol !== 'https:' || issuer.search || issuer.hash)
    c.errors.push({ field: 'issuer', message: 'must be an https URL' })
  const domains = (input.emailDomains ?? []).map((d) => d.toLowerCase())
  for (const d of domains)
    if (!DOMAIN.test(d)) c.errors.push({ field: 'emailDomains', message: `${d} is not a domain` })
  for (const g of Object.values(input.groupMapping ?? {}))
    if (!ID.test(g)) c.errors.push({ field: 'groupMapping', message: `${g} is not a group id` })
  c.done()
  try {
    await change(
      deps,
      who,
      realm,
      {
        type: 'iam.idp.created',
        action: 'iam:CreateIdentityProvider',
        resource: { type: 'IdentityProvider', id: alias },
      },
      async (tx) => {
        await tx.query(
          `INSERT INTO iam.identity_providers (realm, alias, issuer, client_id, client_secret_enc,
             email_domains, groups_claim, group_mapping) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [
            realm,
            alias,
            input.issuer.replace(/\/$/, ''),
            input.clientId,
            input.clientSecret
              ? deps.sealer.seal(input.clientSecret, idpSecretAad(realm, alias))
              : null,
            domains,
            input.groupsClaim ?? 'groups',
            input.groupMapping ?? {},
          ],
        )
      },
      () => ({ issuer: input.issuer, emailDomains: domains }),
    )
  } catch (err) {
    if (isUniqueViolation(err)) throw problems.conflict('That identity provider alias exists')
    throw err
  }
}
