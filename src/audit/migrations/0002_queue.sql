-- Durable queue in front of the Merkle log (Trillian's "queue, then sequence"). Recording an event
-- is one INSERT here, inside the caller's transaction or a group commit, with no lock shared
-- with other writers; the sequencer (src/audit/sequencer.ts) moves queued events into the log in
-- batches, deleting them from the queue in the same transaction. An event is durable once its
-- queue row is committed, and is in the verifiable log moments later.
CREATE TABLE audit.queue (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  log text NOT NULL CHECK (log <> ''),
  -- RFC 8785 canonical JSON of the record, exactly as it will be hashed into the leaf.
  body text NOT NULL,
  queued_at timestamptz NOT NULL DEFAULT now()
);

-- A queued event is never changed; only the sequencer removes it (by integrating it).
CREATE TRIGGER queue_no_update BEFORE UPDATE ON audit.queue
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER queue_no_truncate BEFORE TRUNCATE ON audit.queue
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- The sequencer: the only role that may advance a log.
SELECT core.ensure_role('dflare_audit_sequencer');
GRANT USAGE ON SCHEMA audit TO dflare_audit_sequencer;
GRANT SELECT, DELETE ON audit.queue TO dflare_audit_sequencer;
GRANT INSERT ON audit.events, audit.nodes TO dflare_audit_sequencer;
GRANT SELECT (log, size, frontier), INSERT (log), UPDATE (log, size, frontier, root, updated_at)
  ON audit.heads TO dflare_audit_sequencer;

-- The writer (and so request handlers, which are granted it) now only enqueues: it can no longer
-- touch the log itself, nor read or remove what is queued.
REVOKE ALL ON audit.events, audit.nodes, audit.heads FROM dflare_audit_writer;
GRANT INSERT (log, body) ON audit.queue TO dflare_audit_writer;
