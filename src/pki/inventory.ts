import type { Queryable, Transaction } from '../core/db/index.ts'
import type { IssuedCertificate, SubjectAltName } from './issuer.ts'
import { x509 } from './keys.ts'

/** The `pki.certificates` table: what was issued, to whom, and its revocation state. */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'privilegeWithdrawn',
] as const
export type RevocationReason = (typeof REVOCATION_REASONS)[number]

export const CRL_REASON: Record<RevocationReason, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  cACompromise: x509.X509CrlReason.cACompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
}

export type CertificateKind = 'server' | 'component' | 'workload'
export type CertificateStatus = 'valid' | 'revoked' | 'expired'

export interface CertificateRecord {
  serial: string
  issuerSerial: string
  kind: CertificateKind
  subject: string
  spiffeId: string | null
  tenant: string
  sans: SubjectAltName[]
  notBefore: Date
  notAfter: Date
  fingerprint: string
  issuedAt: Date
  renewedFrom: string | null
  status: CertificateStatus
  revokedAt: Date | null
  revocationReason: RevocationReason | null
  pem: string
}

interface Row {
  serial: string
  issuer_serial: string
  kind: CertificateKind
  subject: string
  spiffe_id: string | null
  tenant: string
  sans: SubjectAltName[]
  not_before: Date
  not_after: Date
  fingerprint: string
  issued_at: Date
  renewed_from: string | null
  revoked_at: Date | null
  revocation_reason: RevocationReason | null
  pem: string
}

const COLUMNS =
  'serial, issuer_serial, kind, subject, spiffe_id, tenant, sans, not_before, not_after, fingerprint, issued_at, renewed_from, revoked_at, revocation_reason, pem'

function toRecord(r: Row, now: Date): CertificateRecord {
  const notAfter = new Date(r.not_after)
  const revokedAt = r.revoked_at ? new Date(r.revoked_at) : null
  return {
    serial: r.serial,
    issuerSerial: r.issuer_serial,
    kind: r.kind,
    subject: r.subject,
    spiffeId: r.spiffe_id,
    tenant: r.tenant,
    sans: r.sans,
    notBefore: new Date(r.not_before),
    notAfter,
    fingerprint: r.fingerprint,
    issuedAt: new Date(r.issued_at),
    renewedFrom: r.renewed_from,
    status: revokedAt ? 'revoked' : notAfter <= now ? 'expired' : 'valid',
    revokedAt,
    revocationReason: r.revocation_reason,
    pem: r.pem,
  }
}

export interface ListFilter {
  status?: CertificateStatus
  kind?: CertificateKind
  tenant?: string
  spiffeId?: string
  limit?: number
}

export const inventory = {
  async insert(
    tx: Queryable,
    c: IssuedCertificate,
    meta: {
      kind: CertificateKind
      issuerSerial: string
      spiffeId: string | null
      tenant: string
      issuedAt: Date
      renewedFrom?: string
    },
  ): Promise<void> {
    await tx.query(
      `INSERT INTO pki.certificates (serial, issuer_serial, kind, subject, spiffe_id, tenant, sans,
         not_before, not_after, fingerprint, pem, issued_at, renewed_from)
       VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8,$9,$10,$11,$12,$13)
       ON CONFLICT (serial) DO NOTHING`,
      [
        c.serial,
        meta.issuerSerial,
        meta.kind,
        c.subject,
        meta.spiffeId,
        meta.tenant,
        JSON.stringify(c.sans),
        c.notBefore,
        c.notAfter,
        c.fingerprint,
        c.cert.toString('pem'),
        meta.issuedAt,
        meta.renewedFrom ?? null,
      ],
    )
  },

  async get(q: Queryable, serial: string, now: Date): Promise<CertificateRecord | undefined> {
    const { rows } = await q.query<Row>(
      `SELECT ${COLUMNS} FROM pki.certificates WHERE serial = $1`,
      [serial],
    )
    return rows[0] ? toRecord(rows[0], now) : undefined
  },

  /** Locks the row for the rest of the transaction (revocation, renewal). */
  async getForUpdate(tx: Transaction, serial: string, now: Date) {
    const { rows } = await tx.query<Row>(
      `SELECT ${COLUMNS} FROM pki.certificates WHERE serial = $1 FOR UPDATE`,
      [serial],
    )
    return rows[0] ? toRecord(rows[0], now) : undefined
  },

  async list(q: Queryable, filter: ListFilter, now: Date): Promise<CertificateRecord[]> {
    const where: string[] = []
    const params: (string | Date | number)[] = []
    const add = (sql: string, v: string | Date) => {
      params.push(v)
      where.push(sql.replace('?', `$${params.length}`))
    }
    if (filter.kind) add('kind = ?', filter.kind)
    if (filter.tenant) add('tenant = ?', filter.tenant)
    if (filter.spiffeId) add('spiffe_id = ?', filter.spiffeId)
    if (filter.status === 'revoked') where.push('revoked_at IS NOT NULL')
    if (filter.status === 'valid') add('revoked_at IS NULL AND not_after > ?', now)
    if (filter.status === 'expired') add('revoked_at IS NULL AND not_after <= ?', now)
    params.push(Math.min(Math.max(filter.limit ?? 500, 1), 5000))
    const { rows } = await q.query<Row>(
      `SELECT ${COLUMNS} FROM pki.certificates ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY issued_at DESC, serial LIMIT $${params.length}`,
      params,
    )
    return rows.map((r) => toRecord(r, now))
  },

  async markRevoked(tx: Queryable, serial: string, reason: RevocationReason, at: Date) {
    await tx.query(
      'UPDATE pki.certificates SET revoked_at = $2, revocation_reason = $3 WHERE serial = $1 AND revoked_at IS NULL',
      [serial, at, reason],
    )
  },

  /** Revoked certificates still inside their validity (expired ones may leave the CRL). */
  async revokedUnexpired(q: Queryable, now: Date) {
    const { rows } = await q.query<{ serial: string; revoked_at: Date; reason: RevocationReason }>(
      `SELECT serial, revoked_at, revocation_reason AS reason FROM pki.certificates
       WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at, serial`,
      [now],
    )
    return rows.map((r) => ({
      serial: r.serial,
      revokedAt: new Date(r.revoked_at),
      reason: r.reason,
    }))
  },

  /** A cheap fingerprint of the revocation set, to know when a cached CRL is stale. */
  async revocationVersion(q: Queryable): Promise<string> {
    const { rows } = await q.query<{ n: number; last: Date | null }>(
      'SELECT count(*)::int AS n, max(revoked_at) AS last FROM pki.certificates WHERE revoked_at IS NOT NULL',
    )
    return `${rows[0]!.n}:${rows[0]!.last ? new Date(rows[0]!.last).getTime() : 0}`
  },

  async nextCrlNumber(tx: Queryable, issuerSerial: string): Promise<number> {
    const { rows } = await tx.query<{ number: number }>(
      `INSERT INTO pki.crl_numbers (issuer_serial, number) VALUES ($1, 1)
       ON CONFLICT (issuer_serial) DO UPDATE SET number = pki.crl_numbers.number + 1
       RETURNING number`,
      [issuerSerial],
    )
    return Number(rows[0]!.number)
  },

  /**
   * Valid certificates past their renewal point with no successor: near expiry means the
   * automatic renewal did not happen (for long-lived ones: inside the warning window).
   */
  async nearExpiry(q: Queryable, now: Date, windowMs: number): Promise<CertificateRecord[]> {
    const { rows } = await q.query<Row & { expiry_warned_at: Date | null }>(
      `SELECT ${COLUMNS.replace(/(\w+)/g, 'c.$1')}, c.expiry_warned_at FROM pki.certificates c
       WHERE c.revoked_at IS NULL AND c.not_after > $1
         AND c.not_after - $1::timestamptz < LEAST($2 * interval '1 millisecond', (c.not_after - c.not_before) / 3)
         AND NOT EXISTS (SELECT 1 FROM pki.certificates s WHERE s.renewed_from = c.serial)
       ORDER BY c.not_after`,
      [now, windowMs],
    )
    return rows.map((r) => toRecord(r, now))
  },

  async markExpiryWarned(tx: Queryable, serial: string, at: Date): Promise<boolean> {
    const r = await tx.query(
      'UPDATE pki.certificates SET expiry_warned_at = $2 WHERE serial = $1 AND expiry_warned_at IS NULL',
      [serial, at],
    )
    return r.rowCount === 1
  },

  async validCount(q: Queryable, now: Date): Promise<number> {
    const { rows } = await q.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pki.certificates WHERE revoked_at IS NULL AND not_after > $1',
      [now],
    )
    return rows[0]!.n
  },
}
