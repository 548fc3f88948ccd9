-- Every change of authz.state.revision is announced on `authz_revision` (core.announce_revision: what
-- the control plane hears on the embedded database is then the revision, src/core/revisions.ts).
CREATE TRIGGER revision_changed AFTER INSERT OR UPDATE OF revision OR DELETE ON authz.state
  FOR EACH ROW EXECUTE FUNCTION core.announce_revision('authz_revision');
CREATE TRIGGER revision_truncated AFTER TRUNCATE ON authz.state
  FOR EACH STATEMENT EXECUTE FUNCTION core.announce_revision('authz_revision');
-- ALWAYS: also with session_replication_role = replica.
ALTER TABLE authz.state ENABLE ALWAYS TRIGGER revision_changed, ENABLE ALWAYS TRIGGER revision_truncated;
