-- The tenant policy of customers, stated on the columns themselves. Migration 3's
-- `mode || '/' || org_id = current_setting('app.tenant', true)` built a string for every row a
-- statement read and compared it (7-11 % of a list page of 50 in pgbench, the statement as the
-- service sends it). Compared column by column with the two parts of the binding, the planner
-- matches them with the statement's own `org_id = $1 AND mode = $2` (every statement states
-- them) and checks the policy once per statement instead of once per row
-- (docs/performance.md#the-tenant-policy-checked-once-per-statement).
--
-- The same rows as before for every binding: `mode` never holds a '/' (its check constraint),
-- so `mode || '/' || org_id` equals the binding exactly when the binding has a '/', `mode` is
-- what precedes its first '/' and `org_id` what follows it. A binding without '/' (NULL, '' or
-- anything else) gives NULL for `mode` and matches no row, as before. Each side compares a
-- column with an expression of the binding alone, so that the planner can check it once.
--
-- Policies only: no table is rewritten; the catalog change takes the table's lock briefly.
SET lock_timeout = '5s';
ALTER POLICY tenant_rows ON customers
    USING (
        mode = CASE WHEN strpos(current_setting('app.tenant', true), '/') > 0
                    THEN split_part(current_setting('app.tenant', true), '/', 1) END
        AND org_id = substr(current_setting('app.tenant', true),
                            strpos(current_setting('app.tenant', true), '/') + 1)
    )
    WITH CHECK (
        mode = CASE WHEN strpos(current_setting('app.tenant', true), '/') > 0
                    THEN split_part(current_setting('app.tenant', true), '/', 1) END
        AND org_id = substr(current_setting('app.tenant', true),
                            strpos(current_setting('app.tenant', true), '/') + 1)
    );
