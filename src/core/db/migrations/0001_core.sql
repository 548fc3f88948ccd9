-- Core helpers shared by every module's migrations.

-- Roles are global to a PostgreSQL cluster while migrations run per database, so creating one
-- must tolerate it existing already (and two databases creating it at the same moment).
CREATE OR REPLACE FUNCTION core.ensure_role(role_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END;
$$;

-- The role request handlers run as (SET LOCAL ROLE): no superuser, no BYPASSRLS, so grants and
-- row-level security apply to it on both engines.
SELECT core.ensure_role('dflare_app');
GRANT USAGE ON SCHEMA core TO dflare_app;

-- Tenant of the current transaction, as set by Db.transaction({ settings: { 'dflare.tenant': … } }).
-- Unset means no tenant: RLS policies comparing against it then match nothing (fail closed).
CREATE OR REPLACE FUNCTION core.current_tenant() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('dflare.tenant', true), '') $$;
GRANT EXECUTE ON FUNCTION core.current_tenant() TO dflare_app;
