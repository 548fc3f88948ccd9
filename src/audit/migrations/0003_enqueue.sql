-- Recording an event is one call: audit.enqueue runs as the writer role whoever calls it (the
-- sink's group commits, as one autocommit statement, and request handlers inside their own
-- transactions), so the only thing a recorder can do to the audit schema is add queue rows.
-- Before, a group commit was a transaction of its own (BEGIN, SET LOCAL ROLE, INSERT, COMMIT):
-- the same WAL flush, but four statements instead of one.
CREATE FUNCTION audit.enqueue(logs text[], bodies text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF cardinality(logs) IS DISTINCT FROM cardinality(bodies) THEN
    RAISE EXCEPTION 'audit.enqueue: % logs for % bodies', cardinality(logs), cardinality(bodies)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO audit.queue (log, body) SELECT * FROM unnest(logs, bodies);
END $$;
ALTER FUNCTION audit.enqueue(text[], text[]) OWNER TO dflare_audit_writer;
REVOKE ALL ON FUNCTION audit.enqueue(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.enqueue(text[], text[]) TO dflare_audit_writer;
-- The control plane's own connection (the user that migrates) calls it for group commits, whether
-- or not its membership in the writer role inherits privileges.
GRANT EXECUTE ON FUNCTION audit.enqueue(text[], text[]) TO CURRENT_USER;
