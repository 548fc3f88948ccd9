-- Tenant isolation: specs, allocations, desired state and apply runs. Operator-only data:
-- no grants to dflare_app (tenants never read it; the API reaches it through the service).
CREATE SCHEMA IF NOT EXISTS isolation;

-- Every version of every tenant spec, immutable once written.
CREATE TABLE isolation.specs (
  tenant text NOT NULL,
  version integer NOT NULL CHECK (version > 0),
  spec jsonb NOT NULL,
  spec_hash text NOT NULL,
  created_at timestamptz NOT NULL,
  created_by text NOT NULL,
  PRIMARY KEY (tenant, version)
);

-- One row per tenant: the lock target for plan/apply/destroy of that tenant.
CREATE TABLE isolation.tenants (
  tenant text PRIMARY KEY,
  fabric text NOT NULL,
  state text NOT NULL CHECK (state IN ('active', 'destroyed')),
  -- The version the last apply/destroy made desired, and what it allocated and rendered.
  desired_version integer,
  resources jsonb,
  plan_hash text,
  updated_at timestamptz NOT NULL
);

-- The pools' row locks serialize allocation per (fabric, pool); ranges mirror the settings.
CREATE TABLE isolation.pools (
  fabric text NOT NULL,
  pool text NOT NULL,
  lo bigint NOT NULL,
  hi bigint NOT NULL,
  PRIMARY KEY (fabric, pool)
);

-- Numbers (VLAN, VNI, VRF id, PKey). The primary key makes sharing a value impossible, even
-- by a bug in the allocator; a released value stays (quarantined) until available_at.
CREATE TABLE isolation.allocations (
  fabric text NOT NULL,
  pool text NOT NULL,
  value bigint NOT NULL,
  tenant text NOT NULL,
  purpose text NOT NULL,
  state text NOT NULL CHECK (state IN ('active', 'quarantined')),
  allocated_at timestamptz NOT NULL,
  available_at timestamptz,
  PRIMARY KEY (fabric, pool, value),
  CHECK ((state = 'quarantined') = (available_at IS NOT NULL))
);
CREATE UNIQUE INDEX allocations_purpose ON isolation.allocations (fabric, pool, tenant, purpose)
  WHERE state = 'active';
CREATE INDEX allocations_tenant ON isolation.allocations (tenant, fabric, pool, purpose);
CREATE INDEX allocations_quarantine ON isolation.allocations (fabric, available_at)
  WHERE state = 'quarantined';

-- Names (namespaces, Slurm accounts/QOS/partitions/users, switch ports, GUIDs, exports,
-- firewall sets), unique per kind and scope (cluster or fabric).
CREATE TABLE isolation.claims (
  kind text NOT NULL,
  scope text NOT NULL,
  name text NOT NULL,
  tenant text NOT NULL,
  state text NOT NULL CHECK (state IN ('active', 'quarantined')),
  claimed_at timestamptz NOT NULL,
  available_at timestamptz,
  PRIMARY KEY (kind, scope, name),
  CHECK ((state = 'quarantined') = (available_at IS NOT NULL))
);
CREATE INDEX claims_tenant ON isolation.claims (tenant);

-- An apply or destroy: its plan and the progress of each step, so a crash resumes.
CREATE TABLE isolation.runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant text NOT NULL,
  operation text NOT NULL CHECK (operation IN ('apply', 'destroy')),
  spec_version integer,
  plan_hash text NOT NULL,
  status text NOT NULL CHECK (status IN ('running', 'done', 'superseded', 'failed')),
  lease_until timestamptz NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  actor text NOT NULL
);
-- At most one unfinished run per tenant.
CREATE UNIQUE INDEX runs_running ON isolation.runs (tenant) WHERE status = 'running';

CREATE TABLE isolation.run_steps (
  run_id bigint NOT NULL REFERENCES isolation.runs (id) ON DELETE CASCADE,
  seq integer NOT NULL,
  layer text NOT NULL,
  object text NOT NULL,
  action text NOT NULL CHECK (action IN ('create', 'change', 'remove')),
  content_hash text,
  done_at timestamptz,
  PRIMARY KEY (run_id, seq)
);
