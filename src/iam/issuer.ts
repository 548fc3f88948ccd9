/**
 * Names shared by the OIDC provider and everything around it, kept apart from provider.ts so
 * that loading them does not load oidc-provider (it is imported when a realm is first used).
 */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
/** Authentication context classes: password only, or password and a second factor. */
export const ACR_PWD = 'urn:dflare:acr:pwd'
export const ACR_MFA = 'urn:dflare:acr:mfa'
/** Authenticated by a trusted upstream identity provider (SSO federation). */
export const ACR_FED = 'urn:dflare:acr:fed'

export function issuerOf(publicUrl: URL, realm: string) {
  return `${publicUrl.origin}/realms/${realm}`
}
