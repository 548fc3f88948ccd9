-- Every change of authz.state.revision is announced on `authz_revision` (the payload is the new
-- revision) in the transaction that makes it. On the embedded database the control plane is the
-- only writer and hears its own notifications before its commits return, so what it last heard
-- is the database's revision at every moment, and requests need not read it (core/revisions.ts).
-- A trigger announces it, so that no writer can forget, and it fires always, also where a session
-- switches ordinary triggers off (session_replication_role = replica); removing the row announces
-- `reset`, which is not a revision: listeners then read again.
CREATE FUNCTION authz.revision_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
    PERFORM pg_notify('authz_revision', 'reset');
  ELSE
    PERFORM pg_notify('authz_revision', NEW.revision::text);
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION authz.revision_changed() FROM PUBLIC;

CREATE TRIGGER revision_changed AFTER INSERT OR UPDATE OF revision OR DELETE ON authz.state
  FOR EACH ROW EXECUTE FUNCTION authz.revision_changed();
CREATE TRIGGER revision_truncated AFTER TRUNCATE ON authz.state
  FOR EACH STATEMENT EXECUTE FUNCTION authz.revision_changed();
-- ALWAYS: also with session_replication_role = replica.
ALTER TABLE authz.state ENABLE ALWAYS TRIGGER revision_changed, ENABLE ALWAYS TRIGGER revision_truncated;
