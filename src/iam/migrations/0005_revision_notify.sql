-- Every change of iam.state.revision is announced on `iam_revision` (the payload is the new
-- revision) in the transaction that makes it. On the embedded database the control plane is the
-- only writer and hears its own notifications before its commits return, so what it last heard
-- is the database's revision at every moment, and requests need not read it (core/revisions.ts).
-- A trigger announces it, so that no writer can forget, and it fires always, also where a session
-- switches ordinary triggers off (session_replication_role = replica); removing the row announces
-- `reset`, which is not a revision: listeners then read again.
CREATE FUNCTION iam.revision_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
    PERFORM pg_notify('iam_revision', 'reset');
  ELSE
    PERFORM pg_notify('iam_revision', NEW.revision::text);
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION iam.revision_changed() FROM PUBLIC;

CREATE TRIGGER revision_changed AFTER INSERT OR UPDATE OF revision OR DELETE ON iam.state
  FOR EACH ROW EXECUTE FUNCTION iam.revision_changed();
CREATE TRIGGER revision_truncated AFTER TRUNCATE ON iam.state
  FOR EACH STATEMENT EXECUTE FUNCTION iam.revision_changed();
-- ALWAYS: also with session_replication_role = replica.
ALTER TABLE iam.state ENABLE ALWAYS TRIGGER revision_changed, ENABLE ALWAYS TRIGGER revision_truncated;
