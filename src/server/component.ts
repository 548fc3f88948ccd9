import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Clock } from '../core/clock.ts'
import type { Db } from '../core/db/index.ts'
import type { EventSink } from '../core/events.ts'
import type { ObjectStore } from '../core/objects/types.ts'
import type { Config } from './config.ts'

/** Process-wide resources every component receives from the composition root. */
export interface Runtime {
  config: Config
  db: Db
  objects: ObjectStore
  log: Logger
  metrics: Registry
  clock: Clock
  /** Where security events go (the audit log once that component is enabled). */
  events: EventSink
  /** External base URL, e.g. https://127.0.0.1:8443; issuers are `${publicUrl}/realms/{tenant}`. */
  publicUrl: URL
}

/**
 * One part of the control plane. The composition root (compose.ts) creates the enabled
 * components in dependency order, mounts their routes on the HTTPS server, then starts them.
 */
export interface Component {
  readonly name: string
  /** Mounts HTTP routes. Called once, before the listener opens. */
  routes?(app: FastifyInstance): Promise<void> | void
  /** Starts background work (schedulers, listeners) after the server is listening. */
  start?(): Promise<void>
  /** Stops background work; called on shutdown in reverse order, before the db closes. */
  stop?(): Promise<void>
}

/**
 * Endpoints a component serves to other components on the internal mutual-TLS listener
 * (`dflare serve`), under `/internal/v1/<component>/`. Only the callers named here get a
 * connection: each must present a current, unrevoked certificate of this CA for
 * `spiffe://<trust domain>/component/<caller>`.
 */
export interface InternalApi {
  readonly component: string
  /** Component names whose service identities may call (the allow-list). */
  readonly callers: readonly string[]
  /** Mounts the routes, relative to `/internal/v1/<component>`. */
  routes(app: FastifyInstance): Promise<void> | void
}
