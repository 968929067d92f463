-- Row-level security: a second wall behind the tenant filter that every query already has.
--
-- The service does its work as the role customers_app (see src/db.rs: every pooled connection
-- runs SET ROLE customers_app), which owns nothing and cannot bypass row-level security. Each
-- statement or transaction binds its tenant with set_config('app.org_id' / 'app.mode', ...,
-- is_local => true), so the binding ends with the transaction and never leaks into the next
-- request that reuses the connection. These policies then let it see and write only that
-- tenant's rows: a query that forgot its tenant filter finds nothing of another tenant, and a
-- statement that forgot to bind a tenant sees nothing at all.

-- Roles belong to the whole cluster, so another database (a test database, a second
-- deployment) may have created it already.
DO $$
BEGIN
    CREATE ROLE customers_app NOLOGIN NOBYPASSRLS;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON customers, idempotency_keys TO customers_app;
-- /readyz compares the applied migrations with the ones the binary knows.
GRANT SELECT ON _sqlx_migrations TO customers_app;

-- The tenant test. PL/pgSQL and VOLATILE on purpose: PostgreSQL then evaluates it on each row a
-- statement reaches, after the statement has bound its tenant, and never turns it into an index
-- condition computed before the binding (which a STABLE or SQL-language function would allow).
-- A missing setting reads as NULL, which matches nothing.
CREATE FUNCTION customers_app_tenant_is(row_org_id text, row_mode text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE PARALLEL SAFE
AS $$
BEGIN
    RETURN row_org_id = current_setting('app.org_id', true)
       AND row_mode = current_setting('app.mode', true);
END
$$;

ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_rows ON customers TO customers_app
    USING (customers_app_tenant_is(org_id, mode))
    WITH CHECK (customers_app_tenant_is(org_id, mode));

CREATE POLICY tenant_rows ON idempotency_keys TO customers_app
    USING (customers_app_tenant_is(org_id, mode))
    WITH CHECK (customers_app_tenant_is(org_id, mode));

-- The sweeper deletes expired keys of every tenant. It binds no tenant; it marks its own
-- transaction with app.sweeper = on, and may then see and delete expired keys only.
CREATE POLICY sweeper_expired_keys ON idempotency_keys FOR SELECT TO customers_app
    USING (current_setting('app.sweeper', true) = 'on' AND expires_at <= now());
CREATE POLICY sweeper_delete_expired_keys ON idempotency_keys FOR DELETE TO customers_app
    USING (current_setting('app.sweeper', true) = 'on' AND expires_at <= now());
-- Its SELECT ... FOR UPDATE SKIP LOCKED needs an UPDATE policy to lock a row; WITH CHECK (false)
-- keeps any actual update impossible.
CREATE POLICY sweeper_lock_expired_keys ON idempotency_keys FOR UPDATE TO customers_app
    USING (current_setting('app.sweeper', true) = 'on' AND expires_at <= now())
    WITH CHECK (false);

-- Under row-level security PostgreSQL evaluates a condition ahead of the policy (as an index
-- condition, say) only when its functions are leakproof, and lower() is not: the email filter
-- on lower(email) would scan the whole tenant. A stored lower-cased copy compared with plain
-- text equality (leakproof) keeps that filter an index lookup.
ALTER TABLE customers ADD COLUMN email_lower text GENERATED ALWAYS AS (lower(email)) STORED;
DROP INDEX customers_email_lower;
CREATE INDEX customers_email_lower
    ON customers (org_id, mode, email_lower, created_at DESC, id DESC)
    WHERE email_lower IS NOT NULL;
