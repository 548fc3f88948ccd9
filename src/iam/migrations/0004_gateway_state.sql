-- What the gateway checks on every request (realm status and token lifetime, revoked tokens and
-- sessions) is cached in each process (src/iam/gateway-state.ts). Every change to it bumps
-- iam.state.revision and sends a NOTIFY on `iam_gateway` in the changing transaction. Triggers do
-- it, so no writer can forget. Deleting expired revocations notifies nothing: it never makes a
-- live token valid again.
CREATE TABLE iam.state (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  revision bigint NOT NULL
);
INSERT INTO iam.state (singleton, revision) VALUES (true, 0);

CREATE FUNCTION iam.gateway_state_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r bigint;
  body jsonb;
BEGIN
  -- The row lock on iam.state orders revisions by commit, like authz.state.
  UPDATE iam.state SET revision = revision + 1 RETURNING revision INTO r;
  IF TG_TABLE_NAME = 'realms' THEN
    IF TG_OP = 'DELETE' THEN
      body := jsonb_build_object('realm', OLD.id);
    ELSE
      body := jsonb_build_object('realm', NEW.id);
    END IF;
  ELSIF TG_TABLE_NAME = 'revoked_tokens' THEN
    body := jsonb_build_object('jti', NEW.jti, 'expires', extract(epoch FROM NEW.expires_at));
  ELSE
    body := jsonb_build_object(
      'realm', NEW.realm, 'sid', NEW.sid, 'expires', extract(epoch FROM NEW.expires_at));
  END IF;
  PERFORM pg_notify('iam_gateway', (body || jsonb_build_object('revision', r))::text);
  RETURN NULL;
END $$;

CREATE TRIGGER gateway_state AFTER INSERT OR UPDATE OR DELETE ON iam.realms
  FOR EACH ROW EXECUTE FUNCTION iam.gateway_state_changed();
CREATE TRIGGER gateway_state AFTER INSERT OR UPDATE ON iam.revoked_tokens
  FOR EACH ROW EXECUTE FUNCTION iam.gateway_state_changed();
CREATE TRIGGER gateway_state AFTER INSERT OR UPDATE ON iam.revoked_sessions
  FOR EACH ROW EXECUTE FUNCTION iam.gateway_state_changed();
