CREATE SCHEMA api;
GRANT USAGE ON SCHEMA api TO dflare_app;

-- Platform resources the isolation layer owns (clusters, node pools, networks, volumes), kept as
-- records with an owner and labels. Every row belongs to one tenant; row-level security keeps a
-- transaction running as dflare_app inside the tenant it set (dflare.tenant).
CREATE TABLE api.resources (
  tenant text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('Cluster', 'NodePool', 'Network', 'Volume')),
  id text NOT NULL,
  name text NOT NULL,
  project text,
  cluster text,
  owner text NOT NULL,
  labels jsonb NOT NULL DEFAULT '{}'::jsonb,
  classification text NOT NULL DEFAULT 'internal'
    CHECK (classification IN ('public', 'internal', 'confidential', 'restricted')),
  spec jsonb NOT NULL DEFAULT '{}'::jsonb,
  version integer NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, kind, id),
  UNIQUE (tenant, kind, name)
);
ALTER TABLE api.resources ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON api.resources
  USING (tenant = core.current_tenant()) WITH CHECK (tenant = core.current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON api.resources TO dflare_app;
