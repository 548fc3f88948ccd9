import type { Pdp } from '../authz/contract.ts'
import type { Clock } from '../core/clock.ts'
import type { Db, Transaction } from '../core/db/index.ts'
import { problems } from '../core/errors.ts'
import type { Actor, EventSink } from '../core/events.ts'
import { checkCsr } from './csr.ts'
import {
  type CertificateKind,
  type CertificateRecord,
  CRL_REASON,
  inventory,
  type ListFilter,
  type RevocationReason,
} from './inventory.ts'
import {
  type CertificateAuthority,
  describe,
  type IssuedCertificate,
  type LeafProfile,
  normalizeSerial,
} from './issuer.ts'
import { type CryptoKey, generateEcKeyPair, privateKeyToPem, x509 } from './keys.ts'
import { componentId, parseSpiffeId } from './spiffe.ts'

/**
 * Certificate lifecycle on top of the CA and the inventory: issue, renew, revoke, list, CRL.
 * Every issuance and revocation is written to the inventory and recorded as a security event
 * in the same transaction (both commit, or neither).
 */
export interface PkiPolicy {
  trustDomain: string
  serviceCertTtl: number
  crlValidity: number
  expiryWarning: number
}

export interface PkiServiceDeps {
  db: Db
  ca: CertificateAuthority
  events: EventSink
  clock: Clock
  policy: PkiPolicy
  /** Decides CSR-based issuance for callers other than the operator CLI. */
  pdp?: Pdp
}

/** Who is asking: the authenticated principal (as the gateway resolved it). */
export interface Caller {
  actor: Actor
  /** Tenant (realm) the principal belongs to; `platform` for operators and components. */
  tenant: string
  /** Cedar entity of the principal, for the PDP. */
  principal: { type: string; id: string }
  correlationId?: string
  /**
   * Set by the gateway's API routes: the PEP already authorized this exact action on this
   * certificate resource, so the service does not ask the PDP again. The service's own
   * tenant guards (no platform identity, no other tenant's) apply regardless.
   */
  preAuthorized?: true
}

/** Cedar actions (authz schema: resource type Certificate, verbs issue/revoke/read/list). */
export const CERTIFICATE_ISSUE = 'certificate.issue'
export const CERTIFICATE_REVOKE = 'certificate.revoke'

/** Cedar uid of the certificate resource for an identity (or serial) owned by a tenant. */
export function certificateUid(tenant: string, name: string) {
  return { type: 'Dflare::Certificate', id: `${tenant}/${name}` }
}

export const SYSTEM_CALLER: Caller = {
  actor: { kind: 'system', id: 'pki' },
  tenant: 'platform',
  principal: { type: 'Dflare::Service', id: 'pki' },
}

export interface Crl {
  pem: string
  der: Buffer
  number: number
  thisUpdate: Date
  nextUpdate: Date
}

export interface IssueResult {
  certificate: CertificateRecord
  /** Leaf then intermediate. */
  chainPem: string
  /** Only when the service generated the key pair (operator `issue` without a CSR). */
  keyPem?: string
}

const SKEW_MS = 60_000

export class PkiService {
  readonly #d: PkiServiceDeps
  #crl: { version: string; crl: Crl } | undefined

  constructor(deps: PkiServiceDeps) {
    this.#d = deps
  }

  get ca(): CertificateAuthority {
    return this.#d.ca
  }

  get trustDomain(): string {
    return this.#d.policy.trustDomain
  }

  get policy(): PkiPolicy {
    return this.#d.policy
  }

  componentId(name: string): string {
    return componentId(this.#d.policy.trustDomain, name)
  }

  /** Issues a component certificate; generates the key pair unless a CSR is given. */
  async issueComponent(
    input: { name: string; csr?: string; hosts?: string[]; ttlMs?: number },
    caller: Caller = SYSTEM_CALLER,
    tx?: Transaction,
  ): Promise<IssueResult> {
    const spiffeId = this.componentId(input.name)
    if (caller.tenant !== 'platform')
      throw problems.forbidden('only the platform issues component identities')
    await this.#authorize(caller, CERTIFICATE_ISSUE, spiffeId, 'platform')
    return this.#issue(
      { kind: 'service', spiffeId, hosts: input.hosts },
      'component',
      'platform',
      input,
      caller,
      undefined,
      tx,
    )
  }

  /**
   * CSR-based issuance for an external workload. The identity is what the caller asks for and
   * is authorized to hold — never what the CSR claims. Tenants only ever get identities under
   * their own `spiffe://<td>/tenant/<tenant>/…`; platform identities need a platform caller.
   */
  async issueFromCsr(
    input: { csr: string; identity: string; ttlMs?: number; hosts?: string[] },
    caller: Caller,
    tx?: Transaction,
  ): Promise<IssueResult> {
    const id = parseSpiffeId(input.identity)
    if (!id || id.trustDomain !== this.#d.policy.trustDomain)
      throw problems.badRequest(
        `identity must be a SPIFFE id in trust domain ${this.#d.policy.trustDomain}`,
      )
    if (id.kind === 'component') {
      if (caller.tenant !== 'platform')
        throw problems.forbidden('a tenant cannot obtain a platform identity')
      await this.#authorize(caller, CERTIFICATE_ISSUE, id.uri, 'platform')
      return this.#issue(
        { kind: 'service', spiffeId: id.uri, hosts: input.hosts },
        'component',
        'platform',
        input,
        caller,
        undefined,
        tx,
      )
    }
    if (caller.tenant !== 'platform' && caller.tenant !== id.tenant)
      throw problems.forbidden("a tenant cannot obtain another tenant's identity")
    await this.#authorize(caller, CERTIFICATE_ISSUE, id.uri, id.tenant)
    return this.#issue(
      { kind: 'service', spiffeId: id.uri },
      'workload',
      id.tenant,
      input,
      caller,
      undefined,
      tx,
    )
  }

  /** Issues a successor with the same identity (new key unless a CSR is given). */
  async renew(
    serial: string,
    input: { csr?: string; ttlMs?: number } = {},
    caller: Caller = SYSTEM_CALLER,
    tx?: Transaction,
  ): Promise<IssueResult> {
    const old = await inventory.get(tx ?? this.#d.db, normalizeSerial(serial), this.#d.clock.now())
    if (!old) throw problems.notFound('no certificate with this serial')
    if (old.status !== 'valid')
      throw problems.conflict(`certificate is ${old.status}; issue a new one instead`)
    if (caller.tenant !== 'platform' && caller.tenant !== old.tenant)
      throw problems.notFound('no certificate with this serial')
    await this.#authorize(caller, CERTIFICATE_ISSUE, old.spiffeId ?? old.serial, old.tenant)
    const profile: LeafProfile = old.spiffeId
      ? { kind: 'service', spiffeId: old.spiffeId, hosts: hostsOf(old) }
      : { kind: 'server', hosts: hostsOf(old) }
    const ttlMs = input.ttlMs ?? old.notAfter.getTime() - old.notBefore.getTime() - SKEW_MS
    return this.#issue(profile, old.kind, old.tenant, { ...input, ttlMs }, caller, old.serial, tx)
  }

  /**
   * Renewal by the holder itself: it proves possession of the current certificate's key by
   * signing the CSR's identity binding (see renewal.ts); the identity stays the same.
   */
  async renewHeld(current: x509.X509Certificate, csr: string): Promise<IssueResult> {
    const serial = normalizeSerial(current.serialNumber)
    const rec = await this.get(serial)
    if (rec?.status !== 'valid' || rec.fingerprint !== describe(current, '').fingerprint)
      throw problems.forbidden('the presented certificate is not a valid certificate of this CA')
    const caller: Caller = {
      actor: { kind: 'service', id: rec.spiffeId ?? rec.serial },
      tenant: rec.tenant,
      principal: { type: 'Dflare::Service', id: rec.spiffeId ?? rec.serial },
    }
    const profile: LeafProfile = rec.spiffeId
      ? { kind: 'service', spiffeId: rec.spiffeId, hosts: hostsOf(rec) }
      : { kind: 'server', hosts: hostsOf(rec) }
    const ttlMs = rec.notAfter.getTime() - rec.notBefore.getTime() - SKEW_MS
    return this.#issue(profile, rec.kind, rec.tenant, { csr, ttlMs }, caller, rec.serial)
  }

  async revoke(
    serial: string,
    reason: RevocationReason,
    caller: Caller = SYSTEM_CALLER,
    outer?: Transaction,
  ): Promise<CertificateRecord> {
    const s = normalizeSerial(serial)
    const now = this.#d.clock.now()
    const rec = await this.#inTransaction(outer, async (tx) => {
      const cur = await inventory.getForUpdate(tx, s, now)
      if (!cur || (caller.tenant !== 'platform' && caller.tenant !== cur.tenant))
        throw problems.notFound('no certificate with this serial')
      if (cur.status === 'revoked') throw problems.conflict('certificate is already revoked')
      await this.#authorize(caller, CERTIFICATE_REVOKE, cur.spiffeId ?? cur.serial, cur.tenant)
      await inventory.markRevoked(tx, s, reason, now)
      await this.#event(tx, caller, 'pki.certificate.revoked', CERTIFICATE_REVOKE, cur, {
        reason,
      })
      return (await inventory.get(tx, s, now))!
    })
    this.#crl = undefined
    return rec
  }

  get(serial: string): Promise<CertificateRecord | undefined> {
    return inventory.get(this.#d.db, normalizeSerial(serial), this.#d.clock.now())
  }

  list(filter: ListFilter = {}): Promise<CertificateRecord[]> {
    return inventory.list(this.#d.db, filter, this.#d.clock.now())
  }

  /** Records a certificate issued outside the service (the listener's, from ensureServerTls). */
  async recordExternal(pem: string, kind: CertificateKind): Promise<void> {
    const cert = new x509.X509Certificate(pem)
    const issued = describe(cert, pem)
    const now = this.#d.clock.now()
    await this.#d.db.transaction(async (tx) => {
      if (await inventory.get(tx, issued.serial, now)) return
      await inventory.insert(tx, issued, {
        kind,
        issuerSerial: normalizeSerial(this.#d.ca.intermediate.serialNumber),
        spiffeId: null,
        tenant: 'platform',
        issuedAt: cert.notBefore,
      })
      await this.#event(tx, SYSTEM_CALLER, 'pki.certificate.issued', CERTIFICATE_ISSUE, issued, {
        kind,
      })
    })
  }

  /**
   * The current CRL, signed by the intermediate. Regenerated when the revocation set changed
   * or half its validity has passed, so it is never served close to its nextUpdate.
   */
  async crl(): Promise<Crl> {
    const now = this.#d.clock.now()
    const version = await inventory.revocationVersion(this.#d.db)
    const cached = this.#crl
    const halfLife = this.#d.policy.crlValidity / 2
    if (
      cached &&
      cached.version === version &&
      now.getTime() - cached.crl.thisUpdate.getTime() < halfLife &&
      now >= cached.crl.thisUpdate
    )
      return cached.crl
    const crl = await this.#d.db.transaction(async (tx) => {
      const issuer = normalizeSerial(this.#d.ca.intermediate.serialNumber)
      const number = await inventory.nextCrlNumber(tx, issuer)
      const revoked = await inventory.revokedUnexpired(tx, now)
      const thisUpdate = new Date(now.getTime() - SKEW_MS)
      const nextUpdate = new Date(now.getTime() + this.#d.policy.crlValidity)
      const signed = await this.#d.ca.signCrl({
        number,
        thisUpdate,
        nextUpdate,
        entries: revoked.map((r) => ({
          serial: r.serial,
          revokedAt: r.revokedAt,
          reason: CRL_REASON[r.reason],
        })),
      })
      return {
        pem: signed.toString('pem'),
        der: Buffer.from(signed.rawData),
        number,
        thisUpdate,
        nextUpdate,
      }
    })
    this.#crl = { version, crl }
    return crl
  }

  /**
   * Certificates past their renewal point without a successor. Records one
   * `pki.certificate.expiring` event per certificate (the first time it is seen).
   */
  async checkExpiry(): Promise<CertificateRecord[]> {
    const now = this.#d.clock.now()
    const near = await inventory.nearExpiry(this.#d.db, now, this.#d.policy.expiryWarning)
    for (const rec of near) {
      await this.#d.db.transaction(async (tx) => {
        if (!(await inventory.markExpiryWarned(tx, rec.serial, now))) return
        await this.#event(
          tx,
          SYSTEM_CALLER,
          'pki.certificate.expiring',
          'certificate.expiry-check',
          rec,
          {
            secondsLeft: Math.floor((rec.notAfter.getTime() - now.getTime()) / 1000),
          },
        )
      })
    }
    return near
  }

  async #issue(
    profile: LeafProfile,
    kind: CertificateKind,
    tenant: string,
    input: { csr?: string; ttlMs?: number },
    caller: Caller,
    renewedFrom?: string,
    outer?: Transaction,
  ): Promise<IssueResult> {
    const now = this.#d.clock.now()
    const ttl = Math.min(input.ttlMs ?? this.#d.policy.serviceCertTtl, 366 * 86_400_000)
    if (!(ttl > 0)) throw problems.badRequest('ttl must be positive')
    let publicKey: x509.PublicKey | CryptoKey
    let keyPem: string | undefined
    if (input.csr) {
      publicKey = await checkCsr(input.csr, profile.kind === 'service' ? profile.spiffeId : '')
    } else {
      const keys = await generateEcKeyPair()
      publicKey = keys.publicKey
      keyPem = await privateKeyToPem(keys.privateKey)
    }
    const issued = await this.#d.ca.issue(profile, publicKey, {
      notBefore: new Date(now.getTime() - SKEW_MS),
      notAfter: new Date(now.getTime() + ttl),
    })
    const spiffeId = profile.kind === 'service' ? profile.spiffeId : null
    const record = await this.#inTransaction(outer, async (tx) => {
      await inventory.insert(tx, issued, {
        kind,
        issuerSerial: normalizeSerial(this.#d.ca.intermediate.serialNumber),
        spiffeId,
        tenant,
        issuedAt: now,
        renewedFrom,
      })
      await this.#event(
        tx,
        caller,
        renewedFrom ? 'pki.certificate.renewed' : 'pki.certificate.issued',
        renewedFrom ? CERTIFICATE_ISSUE : CERTIFICATE_ISSUE,
        { ...issued, tenant },
        {
          kind,
          spiffeId,
          notAfter: issued.notAfter.toISOString(),
          ...(renewedFrom ? { renewedFrom } : {}),
        },
      )
      return (await inventory.get(tx, issued.serial, now))!
    })
    return { certificate: record, chainPem: issued.chainPem, keyPem }
  }

  /** Runs in the caller's transaction (the gateway's, holding its audit event) or a new one. */
  #inTransaction<T>(outer: Transaction | undefined, fn: (tx: Transaction) => Promise<T>) {
    return outer ? fn(outer) : this.#d.db.transaction(fn)
  }

  async #authorize(caller: Caller, action: string, identity: string, tenant: string) {
    // The operator CLI and the service itself act as the system; API calls were authorized by
    // the gateway for this action and resource; anything else asks the PDP here.
    if (caller.actor.kind === 'system' || caller.preAuthorized) return
    if (!this.#d.pdp)
      throw problems.forbidden('certificate issuance is not authorized (no policy decision point)')
    const resource = certificateUid(tenant, identity)
    const decision = await this.#d.pdp.decide({
      principal: caller.principal,
      action: { type: 'Dflare::Action', id: action },
      resource,
      context: { tenant: caller.tenant },
      entities: [
        {
          uid: resource,
          tenant,
          attrs: { tenant, name: identity },
          parents: [{ type: 'Dflare::Tenant', id: tenant }],
        },
      ],
    })
    if (decision.decision !== 'allow')
      throw problems.forbidden(decision.reason || 'not allowed by policy')
  }

  async #event(
    tx: Transaction,
    caller: Caller,
    type: string,
    action: string,
    c: { serial: string; subject: string; notAfter: Date; tenant?: string },
    details: Record<string, unknown>,
  ) {
    await this.#d.events.record(
      {
        type,
        tenant: c.tenant ?? 'platform',
        actor: caller.actor,
        action,
        resource: { type: 'Certificate', id: c.serial },
        outcome: 'success',
        correlationId: caller.correlationId,
        details: { subject: c.subject, notAfter: c.notAfter.toISOString(), ...details },
      },
      tx,
    )
  }
}

function hostsOf(rec: Pick<CertificateRecord, 'sans'>): string[] {
  return rec.sans.filter((n) => n.type === 'dns' || n.type === 'ip').map((n) => n.value)
}

export type { IssuedCertificate }
