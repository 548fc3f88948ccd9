-- Identity: realms (tenants), their directory, credentials, OIDC artifacts and signing keys.
CREATE SCHEMA IF NOT EXISTS iam;

CREATE TABLE iam.realms (
  id text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9-]{1,62}$'),
  display_name text NOT NULL,
  mfa_policy text NOT NULL DEFAULT 'admins' CHECK (mfa_policy IN ('none', 'admins', 'everyone')),
  -- Access-token lifetime for this realm, seconds; never above the 15 minute hard maximum.
  access_token_ttl integer CHECK (access_token_ttl BETWEEN 30 AND 900),
  disabled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE iam.domains (
  realm text NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
  id text NOT NULL,
  name text NOT NULL,
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, id),
  UNIQUE (realm, name)
);

CREATE TABLE iam.projects (
  realm text NOT NULL,
  id text NOT NULL,
  domain_id text NOT NULL,
  name text NOT NULL,
  description text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, id),
  UNIQUE (realm, domain_id, name),
  FOREIGN KEY (realm, domain_id) REFERENCES iam.domains (realm, id) ON DELETE CASCADE
);

CREATE TABLE iam.users (
  realm text NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
  id text NOT NULL,
  username text NOT NULL,
  email text,
  email_verified boolean NOT NULL DEFAULT false,
  display_name text NOT NULL DEFAULT '',
  domain_id text,
  is_admin boolean NOT NULL DEFAULT false,
  must_enroll_mfa boolean NOT NULL DEFAULT false,
  disabled boolean NOT NULL DEFAULT false,
  failed_logins integer NOT NULL DEFAULT 0,
  locked_until timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, id),
  UNIQUE (realm, username)
);

CREATE TABLE iam.groups (
  realm text NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
  id text NOT NULL,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, id),
  UNIQUE (realm, name)
);

CREATE TABLE iam.memberships (
  realm text NOT NULL,
  group_id text NOT NULL,
  user_id text NOT NULL,
  PRIMARY KEY (realm, group_id, user_id),
  FOREIGN KEY (realm, group_id) REFERENCES iam.groups (realm, id) ON DELETE CASCADE,
  FOREIGN KEY (realm, user_id) REFERENCES iam.users (realm, id) ON DELETE CASCADE
);

-- OAuth clients; a service account is a client allowed the client_credentials grant.
CREATE TABLE iam.clients (
  realm text NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
  client_id text NOT NULL,
  name text NOT NULL,
  service_account boolean NOT NULL DEFAULT false,
  -- AES-256-GCM under the key-encryption key; null for public and private_key_jwt clients.
  secret_enc bytea,
  -- oidc-provider client metadata without the secret.
  metadata jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, client_id)
);

CREATE TABLE iam.credentials (
  realm text NOT NULL,
  user_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('password')),
  hash text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, user_id, kind),
  FOREIGN KEY (realm, user_id) REFERENCES iam.users (realm, id) ON DELETE CASCADE
);

CREATE TABLE iam.mfa_factors (
  realm text NOT NULL,
  id text NOT NULL,
  user_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('totp', 'webauthn', 'recovery')),
  -- totp: encrypted secret; recovery: sha-256 of the code; webauthn: encrypted credential JSON.
  secret bytea NOT NULL,
  confirmed boolean NOT NULL DEFAULT false,
  -- totp: last accepted 30 s time step (replay of a used code is refused); webauthn: sign counter.
  counter bigint NOT NULL DEFAULT 0,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, id),
  FOREIGN KEY (realm, user_id) REFERENCES iam.users (realm, id) ON DELETE CASCADE
);
CREATE INDEX mfa_factors_user ON iam.mfa_factors (realm, user_id, kind);

-- RS256 keys per realm. state: next (published, not yet signing), current (signs), previous
-- (published until retire_at so tokens it signed still verify).
CREATE TABLE iam.signing_keys (
  realm text NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
  kid text NOT NULL,
  state text NOT NULL CHECK (state IN ('next', 'current', 'previous')),
  public_jwk jsonb NOT NULL,
  private_jwk_enc bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  activated_at timestamptz,
  retire_at timestamptz,
  PRIMARY KEY (realm, kid)
);
CREATE UNIQUE INDEX signing_keys_one_current ON iam.signing_keys (realm) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON iam.signing_keys (realm) WHERE state = 'next';

-- oidc-provider artifacts (Session, AccessToken, AuthorizationCode, RefreshToken, DeviceCode,
-- ClientCredentials, Grant, Interaction, ReplayDetection, PushedAuthorizationRequest, …).
CREATE TABLE iam.oidc_payloads (
  realm text NOT NULL,
  model text NOT NULL,
  id text NOT NULL,
  payload jsonb NOT NULL,
  grant_id text,
  user_code text,
  uid text,
  account_id text,
  expires_at timestamptz,
  consumed_at timestamptz,
  PRIMARY KEY (realm, model, id)
);
CREATE INDEX oidc_payloads_grant ON iam.oidc_payloads (realm, grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oidc_payloads_user_code ON iam.oidc_payloads (realm, model, user_code) WHERE user_code IS NOT NULL;
CREATE INDEX oidc_payloads_uid ON iam.oidc_payloads (realm, model, uid) WHERE uid IS NOT NULL;
CREATE INDEX oidc_payloads_account ON iam.oidc_payloads (realm, model, account_id) WHERE account_id IS NOT NULL;
CREATE INDEX oidc_payloads_expiry ON iam.oidc_payloads (expires_at);

-- Revocations the gateway must see within one access-token lifetime (JWTs are not stored).
CREATE TABLE iam.revoked_sessions (
  realm text NOT NULL,
  sid text NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (realm, sid)
);
CREATE TABLE iam.revoked_tokens (
  jti text PRIMARY KEY,
  realm text NOT NULL,
  expires_at timestamptz NOT NULL
);

-- Per-source-IP failed login counters (AC-7 throttling), one window per row.
CREATE TABLE iam.login_throttle (
  realm text NOT NULL,
  ip text NOT NULL,
  failures integer NOT NULL DEFAULT 0,
  window_start timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, ip)
);

-- SSO federation: upstream OIDC identity providers a realm trusts.
CREATE TABLE iam.identity_providers (
  realm text NOT NULL REFERENCES iam.realms ON DELETE CASCADE,
  alias text NOT NULL CHECK (alias ~ '^[a-z][a-z0-9-]{0,62}$'),
  issuer text NOT NULL,
  client_id text NOT NULL,
  client_secret_enc bytea,
  -- Verified email domains routed to this IdP (home-realm discovery).
  email_domains text[] NOT NULL DEFAULT '{}',
  groups_claim text NOT NULL DEFAULT 'groups',
  -- upstream group name -> local group id
  group_mapping jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (realm, alias)
);
CREATE TABLE iam.federated_identities (
  realm text NOT NULL,
  idp_alias text NOT NULL,
  upstream_sub text NOT NULL,
  user_id text NOT NULL,
  PRIMARY KEY (realm, idp_alias, upstream_sub),
  FOREIGN KEY (realm, idp_alias) REFERENCES iam.identity_providers (realm, alias) ON DELETE CASCADE,
  FOREIGN KEY (realm, user_id) REFERENCES iam.users (realm, id) ON DELETE CASCADE
);

-- Request-time access (role dflare_app) sees only the current tenant's directory rows.
-- Secrets, keys and OIDC artifacts stay private to the iam module (no grant at all).
GRANT USAGE ON SCHEMA iam TO dflare_app;
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['domains', 'projects', 'users', 'groups', 'memberships'] LOOP
    EXECUTE format('GRANT SELECT ON iam.%I TO dflare_app', t);
    EXECUTE format('ALTER TABLE iam.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_only ON iam.%I TO dflare_app USING (realm = core.current_tenant())', t);
  END LOOP;
END $$;
GRANT SELECT ON iam.realms TO dflare_app;
ALTER TABLE iam.realms ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON iam.realms TO dflare_app USING (id = core.current_tenant());
