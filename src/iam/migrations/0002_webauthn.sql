-- WebAuthn (passkeys) as a second factor beside TOTP and recovery codes. The 'webauthn' kind of
-- iam.mfa_factors is not used: credentials have their own columns (none of them secret).
CREATE TABLE iam.webauthn_credentials (
  realm text NOT NULL,
  -- Our id of the credential (a UUID), used by the API and the account page.
  id text NOT NULL,
  user_id text NOT NULL,
  -- The authenticator's credential id, base64url; unique in a realm (a credential id already
  -- registered is refused, WebAuthn §7.1).
  credential_id text NOT NULL
    CHECK (credential_id ~ '^[A-Za-z0-9_-]+$' AND length(credential_id) BETWEEN 16 AND 1366),
  -- COSE_Key of the credential public key (never returned by the API).
  public_key bytea NOT NULL,
  -- Signature counter last seen; an assertion that does not increase it (when either is non-zero)
  -- is refused as a possible cloned authenticator.
  counter bigint NOT NULL DEFAULT 0 CHECK (counter BETWEEN 0 AND 4294967295),
  transports text[] NOT NULL DEFAULT '{}',
  -- singleDevice (hardware-bound) or multiDevice (backup eligible, e.g. a synced passkey).
  device_type text NOT NULL CHECK (device_type IN ('singleDevice', 'multiDevice')),
  backed_up boolean NOT NULL DEFAULT false,
  aaguid text NOT NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  PRIMARY KEY (realm, id),
  UNIQUE (realm, credential_id),
  FOREIGN KEY (realm, user_id) REFERENCES iam.users (realm, id) ON DELETE CASCADE
);
CREATE INDEX webauthn_credentials_user ON iam.webauthn_credentials (realm, user_id);

-- Ceremony challenges: single use (deleted when a response is checked), short-lived, stored
-- server-side and bound to one login interaction or one login session, one per purpose.
CREATE TABLE iam.webauthn_challenges (
  realm text NOT NULL,
  -- 'interaction:{uid}' (login, forced enrolment) or 'session:{sid}' (account page).
  binding text NOT NULL,
  purpose text NOT NULL CHECK (purpose IN ('register', 'authenticate')),
  user_id text NOT NULL,
  challenge text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (realm, binding, purpose),
  FOREIGN KEY (realm, user_id) REFERENCES iam.users (realm, id) ON DELETE CASCADE
);
CREATE INDEX webauthn_challenges_expiry ON iam.webauthn_challenges (expires_at);

-- The API lists credentials as dflare_app inside the tenant: every column but the public key.
GRANT SELECT (realm, id, user_id, credential_id, counter, transports, device_type, backed_up,
  aaguid, name, created_at, last_used_at) ON iam.webauthn_credentials TO dflare_app;
ALTER TABLE iam.webauthn_credentials ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON iam.webauthn_credentials TO dflare_app
  USING (realm = core.current_tenant());
