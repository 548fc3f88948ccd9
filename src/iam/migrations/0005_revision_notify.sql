-- Every change of iam.state.revision is announced on `iam_revision` (core.announce_revision: what
-- the control plane hears on the embedded database is then the revision, src/core/revisions.ts).
CREATE TRIGGER revision_changed AFTER INSERT OR UPDATE OF revision OR DELETE ON iam.state
  FOR EACH ROW EXECUTE FUNCTION core.announce_revision('iam_revision');
CREATE TRIGGER revision_truncated AFTER TRUNCATE ON iam.state
  FOR EACH STATEMENT EXECUTE FUNCTION core.announce_revision('iam_revision');
-- ALWAYS: also with session_replication_role = replica.
ALTER TABLE iam.state ENABLE ALWAYS TRIGGER revision_changed, ENABLE ALWAYS TRIGGER revision_truncated;
