-- Lookups by id read the primary key whatever the statistics say.
--
-- Without statistics (a bulk load, a restore, a new deployment, until autovacuum analyses the
-- table) PostgreSQL estimates that any index led by (org_id, mode) finds one row, and planned
-- `WHERE org_id = $1 AND mode = $2 AND id = $3` on a listing index whose fifth column is id:
-- a scan of the whole tenant per lookup (20,000 customers: ~600 GETs/s instead of ~10,000).
-- Every listing index is therefore partial, on a condition that only the listings state, so that
-- the primary key is the only index a statement about one customer can use. The default listing
-- already states `status <> 'deleted'` (customers_list_live); the status filter states
-- `status = $n`, which implies `status IS NOT NULL`; the email filter implies
-- `email_lower IS NOT NULL` (customers_email_lower, already partial). The statements by id
-- state none of these.
DROP INDEX customers_list_by_status;
CREATE INDEX customers_list_by_status
    ON customers (org_id, mode, status, created_at DESC, id DESC)
    WHERE status IS NOT NULL;
