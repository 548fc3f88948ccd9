-- Authorization: the entity store mirrored from other modules, role bindings, and versioned
-- tenant policy sets. Every write bumps authz.state.revision and sends a NOTIFY on
-- `authz_changes` in the same transaction, so caches in every process can invalidate.
CREATE SCHEMA IF NOT EXISTS authz;

CREATE TABLE authz.state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  revision bigint NOT NULL
);
INSERT INTO authz.state (singleton, revision) VALUES (true, 0);

CREATE TABLE authz.entities (
  type text NOT NULL,
  id text NOT NULL,
  tenant text NOT NULL,
  attrs jsonb NOT NULL DEFAULT '{}'::jsonb,
  parents jsonb NOT NULL DEFAULT '[]'::jsonb,
  tags jsonb NOT NULL DEFAULT '{}'::jsonb,
  revision bigint NOT NULL,
  PRIMARY KEY (type, id)
);
CREATE INDEX entities_tenant ON authz.entities (tenant);

-- "principal has role R at scope S". The RoleBinding group entity for (tenant, R, S) is derived.
CREATE TABLE authz.role_bindings (
  tenant text NOT NULL,
  principal_type text NOT NULL,
  principal_id text NOT NULL,
  role text NOT NULL,
  scope_type text NOT NULL CHECK (scope_type IN ('Tenant', 'Domain', 'Project')),
  scope_id text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (principal_type, principal_id, role, scope_type, scope_id)
);
CREATE INDEX role_bindings_tenant ON authz.role_bindings (tenant);
CREATE INDEX role_bindings_scope ON authz.role_bindings (scope_type, scope_id);

CREATE TABLE authz.policy_versions (
  tenant text NOT NULL,
  version integer NOT NULL CHECK (version > 0),
  text text NOT NULL,
  author text NOT NULL,
  comment text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, version)
);

CREATE TABLE authz.active_policies (
  tenant text PRIMARY KEY,
  version integer NOT NULL,
  activated_at timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant, version) REFERENCES authz.policy_versions (tenant, version)
);

GRANT USAGE ON SCHEMA authz TO dflare_app;
GRANT SELECT, UPDATE ON authz.state TO dflare_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON authz.entities, authz.role_bindings,
  authz.policy_versions, authz.active_policies TO dflare_app;

-- Request-time writers (role dflare_app) only touch their own tenant's rows; the platform tenant
-- writes everywhere (tenant creation, operator actions).
ALTER TABLE authz.entities ENABLE ROW LEVEL SECURITY;
CREATE POLICY entities_tenant ON authz.entities TO dflare_app
  USING (tenant = core.current_tenant() OR core.current_tenant() = 'platform')
  WITH CHECK (tenant = core.current_tenant() OR core.current_tenant() = 'platform');
ALTER TABLE authz.role_bindings ENABLE ROW LEVEL SECURITY;
CREATE POLICY role_bindings_tenant ON authz.role_bindings TO dflare_app
  USING (tenant = core.current_tenant() OR core.current_tenant() = 'platform')
  WITH CHECK (tenant = core.current_tenant() OR core.current_tenant() = 'platform');
ALTER TABLE authz.policy_versions ENABLE ROW LEVEL SECURITY;
CREATE POLICY policy_versions_tenant ON authz.policy_versions TO dflare_app
  USING (tenant = core.current_tenant() OR core.current_tenant() = 'platform')
  WITH CHECK (tenant = core.current_tenant() OR core.current_tenant() = 'platform');
ALTER TABLE authz.active_policies ENABLE ROW LEVEL SECURITY;
CREATE POLICY active_policies_tenant ON authz.active_policies TO dflare_app
  USING (tenant = core.current_tenant() OR core.current_tenant() = 'platform')
  WITH CHECK (tenant = core.current_tenant() OR core.current_tenant() = 'platform');
