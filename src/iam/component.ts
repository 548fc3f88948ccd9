import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { rootCertificates } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import type { EntityWriter } from '../authz/contract.ts'
import type { Component, Runtime } from '../server/component.ts'
import type { AdminDeps } from './admin/context.ts'
import { Authenticator } from './authn.ts'
import { BackchannelLogouts } from './backchannel.ts'
import { bootstrap } from './bootstrap.ts'
import { relyingPartyFor } from './credentials/webauthn.ts'
import { Federation } from './federation.ts'
import { GatewayState } from './gateway-state.ts'
import { caFetch } from './https-fetch.ts'
import { issuerOf } from './issuer.ts'
import { createSealer, loadKek } from './kek.ts'
import { ensureKeys } from './keys.ts'
import { ProviderCache } from './providers.ts'
import { iamRoutes } from './routes.ts'
import { createIamService, type IamService } from './service.ts'
import { AccessTokenVerifier } from './verify.ts'

export interface IamDeps {
  /** The authz entity mirror (written in the same transaction as each directory change). */
  entities: EntityWriter
}

export interface Iam {
  component: Component
  service: IamService
  /** Mounts /realms/{realm}/… (OIDC + login pages); also called by component.routes. */
  routes: (app: FastifyInstance) => Promise<void>
  /** Dependencies for the management functions in src/iam/admin/*. */
  admin: AdminDeps
  /** Rotates due signing keys of every realm (also run hourly by the component). */
  rotateKeys(): Promise<number>
  /** Revocations and realm state as the gateway sees them (started with the component). */
  gatewayState: GatewayState
  /** The realm's oidc-provider instance (tests, benchmarks). */
  provider(realm: string): Promise<import('oidc-provider').Provider | undefined>
}

const ROTATION_CHECK_MS = 60 * 60 * 1000

export async function createIam(rt: Runtime, deps: IamDeps): Promise<Iam> {
  const settings = rt.config.iam
  const kek = await loadKek(rt.config.core.home, {
    key: settings.keyEncryptionKey,
    file: settings.keyEncryptionKeyFile,
  })
  const sealer = createSealer(kek)
  const apiAudience = `${rt.publicUrl.origin}/api`
  const issuer = (realm: string) => issuerOf(rt.publicUrl, realm)
  // What every API request checks (revocations, realm state), held in memory while started.
  const gatewayState = new GatewayState(rt.db)
  const verifier = new AccessTokenVerifier(rt.db, issuer, apiAudience, gatewayState)
  const keyPolicy = { rotationInterval: settings.keyRotationInterval, overlap: settings.keyOverlap }
  // Outbound HTTPS (upstream IdPs, back-channel logout receivers) trusts the system roots plus
  // the internal CA (a realm of another Dflare, or of this one, can be an upstream; relying
  // parties inside the platform have certificates of the internal CA).
  const internalCa = await readFile(join(rt.config.core.home, 'pki', 'ca.crt'), 'utf8').catch(
    () => undefined,
  )
  const trust = internalCa ? [...rootCertificates, internalCa] : [...rootCertificates]
  const outbound = caFetch(trust, { maxBodyBytes: 65_536 })
  const providers: ProviderCache = new ProviderCache(
    {
      db: rt.db,
      sealer,
      kek,
      events: rt.events,
      verifier,
      publicUrl: rt.publicUrl,
      apiAudience,
      ttl: {
        accessToken: settings.accessTokenTtl,
        idToken: settings.idTokenTtl,
        refreshIdle: settings.refreshTokenIdle,
        refreshMax: settings.refreshTokenMax,
      },
      outbound,
    },
    settings.providerCacheSize,
    async (realm) => {
      await ensureKeys(rt.db, sealer, rt.events, realm, keyPolicy)
    },
  )
  const ensure = async (realm: string) => {
    if (await ensureKeys(rt.db, sealer, rt.events, realm, keyPolicy)) providers.evict(realm)
  }
  const authn = new Authenticator(
    rt.db,
    rt.events,
    sealer,
    {
      threshold: settings.lockoutThreshold,
      duration: settings.lockoutDuration,
      ipLimit: settings.ipThrottleLimit,
    },
    // Read per ceremony: in tests the public URL learns its port only once listening.
    (realm) => relyingPartyFor(rt.publicUrl, realm),
  )
  const admin: AdminDeps = {
    db: rt.db,
    events: rt.events,
    entities: deps.entities,
    sealer,
    onRealmChanged: (realm) => providers.evict(realm),
  }
  const service = createIamService({
    db: rt.db,
    publicUrl: rt.publicUrl,
    apiAudience,
    verifier,
    defaultAccessTokenTtlMs: settings.accessTokenTtl,
  })

  async function rotateKeys() {
    const { rows } = await rt.db.query<{ id: string }>(
      'SELECT id FROM iam.realms WHERE NOT disabled',
    )
    let rotated = 0
    for (const { id } of rows) {
      if (await ensureKeys(rt.db, sealer, rt.events, id, keyPolicy)) {
        providers.evict(id)
        rotated++
      }
    }
    await rt.db.query('DELETE FROM iam.oidc_payloads WHERE expires_at < now()')
    await rt.db.query('DELETE FROM iam.revoked_sessions WHERE expires_at < now()')
    await rt.db.query('DELETE FROM iam.revoked_tokens WHERE expires_at < now()')
    await rt.db.query('DELETE FROM iam.webauthn_challenges WHERE expires_at < now()')
    return rotated
  }

  const federationFetch = caFetch(trust)
  const federation = new Federation({
    db: rt.db,
    sealer,
    events: rt.events,
    admin,
    issuer,
    fetch: federationFetch,
  })
  // Back-channel logouts of sessions ended by an admin or a directory change.
  const backchannel = new BackchannelLogouts({
    db: rt.db,
    events: rt.events,
    log: rt.log,
    findClient: async (realm, clientId) =>
      (await providers.get(realm))?.provider.Client.find(clientId),
  })
  const routes = (app: FastifyInstance) =>
    iamRoutes(app, { db: rt.db, kek, providers, authn, federation })
  let timer: NodeJS.Timeout | undefined

  const component: Component = {
    name: 'iam',
    routes,
    async start() {
      await gatewayState.start()
      await bootstrap({
        deps: admin,
        home: rt.config.core.home,
        issuer: issuer('platform'),
        ensureKeys: ensure,
        log: rt.log,
      })
      await rotateKeys()
      timer = setInterval(() => {
        rotateKeys().catch((err) => rt.log.error({ err: String(err) }, 'iam: key rotation failed'))
      }, ROTATION_CHECK_MS)
      timer.unref()
      await backchannel.start()
    },
    async stop() {
      if (timer) clearInterval(timer)
      await gatewayState.stop()
      await backchannel.stop()
      outbound.close()
      federationFetch.close()
    },
  }
  const provider = async (realm: string) => (await providers.get(realm))?.provider
  return { component, service, routes, admin, rotateKeys, provider, gatewayState }
}
