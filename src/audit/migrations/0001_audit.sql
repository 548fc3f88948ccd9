-- Audit log: one RFC 6962 Merkle tree per log (a tenant, or `platform`). Append-only in depth:
-- the writer role may only INSERT events, triggers refuse UPDATE/DELETE/TRUNCATE for everyone,
-- and `dflare audit verify` recomputes the tree, so even an owner bypassing both is detected.
CREATE SCHEMA IF NOT EXISTS audit;
SELECT core.ensure_role('dflare_audit_writer');

-- Log head: the only mutable row per log, serialising appends (row lock) so indexes are gapless.
-- `frontier` is the right edge of the tree (roots of its perfect subtrees, largest first,
-- 32 bytes each), enough to extend the root in O(log n). Verification checks it against the events.
CREATE TABLE audit.heads (
  log text PRIMARY KEY,
  size bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
  frontier bytea NOT NULL DEFAULT '\x'::bytea,
  root bytea NOT NULL DEFAULT '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'::bytea,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per leaf. `body` is the RFC 8785 canonical JSON hashed into the leaf; the columns
-- used by queries are generated from it, so they cannot disagree with what the tree covers.
CREATE TABLE audit.events (
  log text NOT NULL,
  idx bigint NOT NULL CHECK (idx >= 0),
  body text NOT NULL,
  leaf_hash bytea NOT NULL,
  -- Root of the tree of size idx+1: lets verification name the first inconsistent entry.
  root bytea NOT NULL,
  time text GENERATED ALWAYS AS ((body::jsonb) ->> 'time') STORED,
  type text GENERATED ALWAYS AS ((body::jsonb) ->> 'type') STORED,
  actor_id text GENERATED ALWAYS AS ((body::jsonb) #>> '{actor,id}') STORED,
  action text GENERATED ALWAYS AS ((body::jsonb) ->> 'action') STORED,
  outcome text GENERATED ALWAYS AS ((body::jsonb) ->> 'outcome') STORED,
  correlation_id text GENERATED ALWAYS AS ((body::jsonb) ->> 'correlationId') STORED,
  PRIMARY KEY (log, idx)
);
CREATE INDEX events_time ON audit.events (time, log, idx);
CREATE INDEX events_log_time ON audit.events (log, time, idx);
CREATE INDEX events_correlation ON audit.events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_actor ON audit.events (actor_id, time);

-- Perfect subtree hashes at level >= 8 (256 leaves and up): proofs read O(log n) rows of this
-- table plus at most a few hundred leaf hashes. Level L, index i covers leaves [i*2^L, (i+1)*2^L).
CREATE TABLE audit.nodes (
  log text NOT NULL,
  level smallint NOT NULL CHECK (level >= 8),
  idx bigint NOT NULL CHECK (idx >= 0),
  hash bytea NOT NULL,
  PRIMARY KEY (log, level, idx)
);

-- Checkpoint signing keys (public halves only; the private keys never enter the database).
-- Rotation adds a row; older keys stay so that old checkpoints keep verifying.
CREATE TABLE audit.keys (
  key_id text PRIMARY KEY,
  name text NOT NULL,
  vkey text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Signed checkpoints: C2SP tlog-checkpoint bodies as C2SP signed notes.
CREATE TABLE audit.checkpoints (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  log text NOT NULL,
  size bigint NOT NULL CHECK (size >= 0),
  root bytea NOT NULL,
  key_id text NOT NULL REFERENCES audit.keys (key_id),
  note text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkpoints_log_size ON audit.checkpoints (log, size DESC, id DESC);

-- Sealed segments written to the object store: [first, first+count) of a log with its checkpoint.
CREATE TABLE audit.segments (
  log text NOT NULL,
  first bigint NOT NULL CHECK (first >= 0),
  count bigint NOT NULL CHECK (count > 0),
  object_key text NOT NULL,
  retain_until timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (log, first)
);

CREATE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit.% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- A head may only move forward; it is never deleted.
CREATE FUNCTION audit.head_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.log <> OLD.log OR NEW.size < OLD.size THEN
    RAISE EXCEPTION 'audit.heads only grows' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['events', 'nodes', 'keys', 'checkpoints', 'segments'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON audit.%I FOR EACH ROW EXECUTE FUNCTION audit.refuse_change()', t || '_append_only', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON audit.%I FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()', t || '_no_truncate', t);
  END LOOP;
END;
$$;
CREATE TRIGGER heads_forward_only BEFORE UPDATE ON audit.heads
  FOR EACH ROW EXECUTE FUNCTION audit.head_forward_only();
CREATE TRIGGER heads_no_delete BEFORE DELETE ON audit.heads
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER heads_no_truncate BEFORE TRUNCATE ON audit.heads
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Privileges: nobody but the owner reads or changes the schema; the writer appends only.
REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO dflare_audit_writer;
GRANT INSERT ON audit.events, audit.nodes TO dflare_audit_writer;
-- The head row is locked and advanced by each append (INSERT … ON CONFLICT DO UPDATE … RETURNING).
GRANT SELECT (log, size, frontier), INSERT (log), UPDATE (log, size, frontier, root, updated_at)
  ON audit.heads TO dflare_audit_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON audit.events, audit.nodes FROM dflare_audit_writer;
-- Request handlers (role dflare_app) record events inside their own transactions.
GRANT dflare_audit_writer TO dflare_app;
