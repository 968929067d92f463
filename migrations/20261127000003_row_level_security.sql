-- Row-level security: a second wall behind the tenant filter that every query already has.
--
-- The service does its work as the role customers_app (see src/db.rs: every pooled connection
-- runs SET ROLE customers_app), which owns nothing and cannot bypass row-level security. Each
-- statement binds its tenant itself, as 'mode/org_id' in the setting app.tenant, with
-- set_config(..., is_local => true): the binding ends with the statement's transaction and never
-- reaches the next request on the connection (see src/customers/repo.rs for how it is placed so
-- that it runs before any row is read). These policies then let a statement see and write only
-- that tenant's rows: a query that forgot its tenant filter finds nothing of another tenant, and
-- a statement that forgot the binding sees nothing at all.

-- Roles belong to the whole cluster, so another database (a test database, a second
-- deployment) may have created it already; an operator may also create it beforehand, so that
-- the migrating role needs no CREATEROLE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'customers_app') THEN
        CREATE ROLE customers_app NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION
    -- Created by a concurrent migration of another database between the test and the CREATE.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON customers, idempotency_keys TO customers_app;
-- /readyz compares the applied migrations with the ones the binary knows.
GRANT SELECT ON _sqlx_migrations TO customers_app;

ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;

-- A missing binding reads as NULL or '' (once set in the session), which matches no row.
CREATE POLICY tenant_rows ON customers TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true))
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));

CREATE POLICY tenant_rows ON idempotency_keys TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true))
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));

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
