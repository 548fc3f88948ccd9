-- Inventory of every certificate the internal CA issued, and CRL numbering.
CREATE SCHEMA IF NOT EXISTS pki;

CREATE TABLE pki.certificates (
  serial text PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{1,40}$'),
  -- Serial of the intermediate that signed it.
  issuer_serial text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('server', 'component', 'workload')),
  subject text NOT NULL,
  -- SPIFFE id (URI SAN) for component and workload certificates.
  spiffe_id text,
  -- Owning tenant: 'platform' for component and server certificates.
  tenant text NOT NULL,
  sans jsonb NOT NULL,
  not_before timestamptz NOT NULL,
  not_after timestamptz NOT NULL,
  fingerprint text NOT NULL UNIQUE,
  pem text NOT NULL,
  issued_at timestamptz NOT NULL,
  -- Serial of the certificate this one renewed, if any.
  renewed_from text REFERENCES pki.certificates (serial),
  revoked_at timestamptz,
  revocation_reason text CHECK (
    revocation_reason IN (
      'unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded',
      'cessationOfOperation', 'privilegeWithdrawn'
    )
  ),
  -- When the near-expiry event was recorded (once per certificate).
  expiry_warned_at timestamptz,
  -- Revocation is recorded together with its reason and time, or not at all.
  CHECK ((revoked_at IS NULL) = (revocation_reason IS NULL)),
  CHECK (not_after > not_before)
);

CREATE INDEX certificates_not_after ON pki.certificates (not_after) WHERE revoked_at IS NULL;
CREATE INDEX certificates_revoked ON pki.certificates (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_spiffe ON pki.certificates (spiffe_id);
CREATE INDEX certificates_renewed_from ON pki.certificates (renewed_from);

-- One row per CRL issuer (intermediate serial): the last CRL number used (RFC 5280 §5.2.3).
CREATE TABLE pki.crl_numbers (
  issuer_serial text PRIMARY KEY,
  number bigint NOT NULL CHECK (number > 0)
);

SELECT core.ensure_role('dflare_app');
GRANT USAGE ON SCHEMA pki TO dflare_app;
GRANT SELECT, INSERT, UPDATE ON pki.certificates TO dflare_app;
GRANT SELECT, INSERT, UPDATE ON pki.crl_numbers TO dflare_app;
