-- Trigger function for a module's revision row (authz.state, iam.state): announces every new
-- revision on the channel the trigger names, in the transaction that changes it; removing the row
-- announces `reset`, which is not a revision (listeners then read again). On the embedded database
-- the control plane is the only writer and hears its own notifications before its commits return,
-- so what it last heard is the database's revision at every moment, and requests need not read it
-- (src/core/revisions.ts). Modules attach it with ENABLE ALWAYS, so that it fires also where a
-- session switches ordinary triggers off (session_replication_role = replica).
CREATE FUNCTION core.announce_revision() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
    PERFORM pg_notify(TG_ARGV[0], 'reset');
  ELSE
    PERFORM pg_notify(TG_ARGV[0], NEW.revision::text);
  END IF;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION core.announce_revision() FROM PUBLIC;
