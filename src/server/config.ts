import { auditSettings } from '../audit/settings.ts'
import { authzSettings } from '../authz/settings.ts'
import { type ConfigOf, type LoadOptions, loadConfig } from '../core/config/index.ts'
import { coreSettings } from '../core/settings.ts'
import { gatewaySettings } from '../gateway/settings.ts'
import { iamSettings } from '../iam/settings.ts'
import { isolationSettings } from '../isolation/settings.ts'
import { pkiSettings } from '../pki/settings.ts'
import { serverSettings } from './settings.ts'

/** Every module's settings, in resolution order (core first: others may derive from home). */
export const allSettings = {
  core: coreSettings,
  server: serverSettings,
  audit: auditSettings,
  authz: authzSettings,
  gateway: gatewaySettings,
  pki: pkiSettings,
  iam: iamSettings,
  isolation: isolationSettings,
} as const

export type Config = ConfigOf<typeof allSettings>

export function loadDflareConfig(options?: LoadOptions) {
  return loadConfig(allSettings, options)
}
