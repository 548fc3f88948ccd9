import type { Logger } from 'pino'
import { RemoteEventSink } from '../audit/remote-sink.ts'
import type { Pdp } from '../authz/contract.ts'
import { RemotePdp } from '../authz/remote-pdp.ts'
import type { Db, Transaction } from '../core/db/index.ts'
import type { EventSink, SecurityEvent } from '../core/events.ts'
import type { TokenAuthority } from '../gateway/authenticate.ts'
import { projectExists } from '../iam/internal.ts'
import { RemoteIdentity } from '../iam/remote-authority.ts'
import type { IamService } from '../iam/service.ts'
import { PeerClient } from '../pki/peer-client.ts'
import type { ServiceIdentity } from '../pki/svid.ts'
import type { TlsMinVersion } from '../pki/tls-policy.ts'
import { type ComponentName, peerServerName, type ServedComponent } from './topology.ts'

/** What the gateway and isolation need from identity, wherever iam runs. */
export interface Identity extends TokenAuthority {
  realmExists(realm: string): Promise<boolean>
  projectExists(realm: string, project: string): Promise<boolean>
}

/**
 * An EventSink whose target is connected once the component's identity exists (a component on
 * the PKI host gets its certificate from the PKI it is built with). Until then, and if it is
 * never connected, recording fails: fail closed.
 */
class LateSink implements EventSink {
  target: EventSink | undefined
  record(event: SecurityEvent, tx?: Transaction): Promise<void> {
    if (!this.target) return Promise.reject(new Error('the audit log is not connected yet'))
    return this.target.record(event, tx)
  }
}

export interface PeersOptions {
  db: Db
  log: Logger
  /** Where each component that runs elsewhere listens (its internal mTLS listener). */
  remote: ReadonlyMap<ServedComponent, URL>
  /** This process's service identities, one per local component, by component. */
  identities: ReadonlyMap<ComponentName, ServiceIdentity>
  trustDomain: string
  minVersion: TlsMinVersion
}

/**
 * How each local component reaches audit, authz and iam: the in-process implementation when that
 * component runs here (set `audit`, `authz`, `iam` as they are built), else an mTLS client with the
 * same interface. One client per (caller, callee) pair: each caller presents its own identity, and
 * each callee's allow-list names its callers.
 */
export class Peers {
  audit: EventSink | undefined
  authz: Pdp | undefined
  iam: IamService | undefined
  readonly #options: PeersOptions
  readonly #clients: PeerClient[] = []
  readonly #sinks = new Map<ComponentName, LateSink>()
  readonly #identities: RemoteIdentity[] = []

  constructor(options: PeersOptions) {
    this.#options = options
  }

  #client(caller: ComponentName, peer: ServedComponent): PeerClient {
    const o = this.#options
    const client = new PeerClient({
      peer,
      url: o.remote.get(peer)!,
      identity: o.identities.get(caller)!,
      trustDomain: o.trustDomain,
      serverName: peerServerName(peer, o.trustDomain),
      minVersion: o.minVersion,
    })
    this.#clients.push(client)
    return client
  }

  /** The event sink for `caller`'s security events. */
  events(caller: ComponentName): EventSink {
    if (this.audit) return this.audit
    const existing = this.#sinks.get(caller)
    if (existing) return existing
    const sink = new LateSink()
    this.#sinks.set(caller, sink)
    return sink
  }

  /** Connects every remote event sink handed out, once the callers' identities exist. */
  connectEvents() {
    for (const [caller, sink] of this.#sinks)
      sink.target = new RemoteEventSink(this.#client(caller, 'audit'))
  }

  pdp(caller: ComponentName): Pdp {
    if (this.authz) return this.authz
    return new RemotePdp(
      this.#client(caller, 'authz'),
      this.#options.log.child({ component: caller, peer: 'authz' }),
    )
  }

  identity(caller: ComponentName): Identity {
    const { db, log } = this.#options
    if (this.iam)
      return {
        ...this.iam,
        projectExists: (realm: string, project: string) => projectExists(db, realm, project),
      }
    const remote = new RemoteIdentity(
      this.#client(caller, 'iam'),
      log.child({ component: caller, peer: 'iam' }),
    )
    this.#identities.push(remote)
    return remote
  }

  /** Why this process cannot serve yet (a remote iam not reached), or undefined. */
  notReady(): string | undefined {
    for (const r of this.#identities) {
      const waiting = r.ready()
      if (waiting) return waiting
    }
    return undefined
  }

  /** Starts background work of the remote clients; returns its stop. */
  start(): () => void {
    for (const r of this.#identities) r.start()
    return () => {
      for (const r of this.#identities) r.stop()
    }
  }

  close() {
    for (const c of this.#clients.splice(0)) c.close()
  }
}
