import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import * as client from 'openid-client'
import pino from 'pino'
import { Registry } from 'prom-client'
import type { EntityRecord, EntityUid, EntityWriter } from '../../src/authz/contract.ts'
import { systemClock } from '../../src/core/clock.ts'
import { MemoryEventSink } from '../../src/core/events.ts'
import { createClient } from '../../src/iam/admin/clients.ts'
import type { AdminActor } from '../../src/iam/admin/context.ts'
import { createRealm } from '../../src/iam/admin/realms.ts'
import { createUser } from '../../src/iam/admin/users.ts'
import { createIam, type Iam } from '../../src/iam/component.ts'
import { caFetch } from '../../src/iam/https-fetch.ts'
import { iamMigrations } from '../../src/iam/migrations.ts'
import { iamSettings } from '../../src/iam/settings.ts'
import { ensureServerTls } from '../../src/pki/server-identity.ts'
import type { Runtime } from '../../src/server/component.ts'
import { migratedDatabase, type TestDatabase } from '../support/db.ts'

/** Records what iam mirrors into authz (the real store is the authz module's). */
export class RecordingEntityWriter implements EntityWriter {
  readonly entities = new Map<string, EntityRecord>()
  async upsert(_tx: unknown, entities: readonly EntityRecord[]) {
    for (const e of entities) this.entities.set(`${e.uid.type}/${e.uid.id}`, e)
  }
  async remove(_tx: unknown, uids: readonly EntityUid[]) {
    for (const u of uids) this.entities.delete(`${u.type}/${u.id}`)
  }
}

export const OPERATOR: AdminActor = { actor: { kind: 'user', id: 'test-operator' } }

export interface Harness {
  t: TestDatabase
  iam: Iam
  app: FastifyInstance
  events: MemoryEventSink
  entities: RecordingEntityWriter
  home: string
  base: URL
  ca: string
  fetch: ReturnType<typeof caFetch>
  issuer(realm: string): URL
  /** openid-client configuration for a client of a realm. */
  discover(
    realm: string,
    clientId: string,
    auth?: client.ClientAuth,
    metadata?: Partial<client.ClientMetadata>,
  ): Promise<client.Configuration>
  close(): Promise<void>
}

export function defaultIamSettings(overrides: Record<string, unknown> = {}) {
  const values = Object.fromEntries(Object.entries(iamSettings).map(([k, s]) => [k, s.default]))
  return { ...values, ...overrides }
}

/**
 * A real HTTPS server on 127.0.0.1:0 with the iam routes, on a fresh database. With
 * `host: 'localhost'` the public URL (issuers, WebAuthn RP ID) names localhost, which the
 * certificate covers too: browsers refuse an IP address as a WebAuthn RP ID.
 */
export async function startHarness(
  overrides: Record<string, unknown> = {},
  opts: { requestCert?: boolean; host?: 'localhost' } = {},
): Promise<Harness> {
  const t = await migratedDatabase([iamMigrations])
  const home = await mkdtemp(join(tmpdir(), 'dflare-iam-'))
  const tls = await ensureServerTls({
    dir: join(home, 'pki'),
    hosts: ['127.0.0.1', ...(opts.host ? [opts.host] : [])],
  })
  const server: Server = createServer({
    cert: tls.cert,
    key: tls.key,
    minVersion: 'TLSv1.2',
    // mTLS client authentication: certificates are asked for and checked against the internal
    // CA, but a connection without one is still accepted (the token endpoint decides).
    ...(opts.requestCert ? { requestCert: true, rejectUnauthorized: false, ca: [tls.ca] } : {}),
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const base = new URL(`https://${opts.host ?? '127.0.0.1'}:${port}`)
  const events = new MemoryEventSink()
  const entities = new RecordingEntityWriter()
  const rt = {
    config: { core: { home }, iam: defaultIamSettings(overrides) },
    db: t.db,
    log: pino({ level: 'silent' }),
    metrics: new Registry(),
    clock: systemClock,
    events,
    publicUrl: base,
  } as unknown as Runtime
  const iam = await createIam(rt, { entities })
  const app = Fastify({
    serverFactory: (handler) => {
      server.on('request', handler)
      return server
    },
  })
  await iam.routes(app)
  await app.ready()
  await iam.component.start!()
  const fetch = caFetch(tls.ca)
  const issuer = (realm: string) => new URL(`${base.origin}/realms/${realm}`)
  return {
    t,
    iam,
    app,
    events,
    entities,
    home,
    base,
    ca: tls.ca,
    fetch,
    issuer,
    discover: (realm, clientId, auth, metadata) =>
      client.discovery(issuer(realm), clientId, metadata, auth, { [client.customFetch]: fetch }),
    async close() {
      fetch.close()
      await iam.component.stop!()
      await app.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await t.close()
      await rm(home, { recursive: true, force: true })
    },
  }
}

/** A realm with a service account and a user with a password (optionally MFA enrolment). */
export async function seedRealm(
  h: Harness,
  realm: string,
  opts: { mfaPolicy?: 'none' | 'admins' | 'everyone' } = {},
) {
  await createRealm(h.iam.admin, OPERATOR, { id: realm, mfaPolicy: opts.mfaPolicy ?? 'none' })
  const svc = await createClient(h.iam.admin, OPERATOR, realm, {
    clientId: 'svc',
    name: 'svc',
    serviceAccount: true,
  })
  const user = await createUser(h.iam.admin, OPERATOR, realm, {
    username: 'alice',
    password: 'correct horse battery staple',
    email: 'alice@example.com',
  })
  return { clientSecret: svc.clientSecret!, user }
}

/** The OAuth error code of an openid-client failure (body error or WWW-Authenticate challenge). */
export function oauthError(err: unknown): string | undefined {
  const e = err as { error?: string; cause?: unknown; code?: string }
  if (typeof e?.error === 'string') return e.error
  const cause = e?.cause as { error?: string } | { parameters?: { error?: string } }[] | undefined
  if (Array.isArray(cause)) return cause[0]?.parameters?.error
  return cause?.error
}

export async function rejectsWith(p: Promise<unknown>, code: string) {
  try {
    await p
  } catch (err) {
    const got = oauthError(err)
    if (got !== code) throw new Error(`expected ${code}, got ${got ?? String(err)}`)
    return
  }
  throw new Error(`expected ${code}, but it succeeded`)
}
