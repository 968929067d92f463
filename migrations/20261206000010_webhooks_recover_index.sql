-- no-transaction
-- recover (POST /v1/webhooks/{id}/recover) reads a tenant's events that occurred at or after an
-- instant. Without this index it would walk the tenant's whole feed. Built CONCURRENTLY (an
-- existing, possibly large table: writes go on while it builds); IF NOT EXISTS so that a rerun
-- after an interrupted build can finish (drop an INVALID one first). Each event written adds one
-- entry (some 50 bytes).
CREATE INDEX CONCURRENTLY IF NOT EXISTS customer_events_occurred
    ON customer_events (org_id, mode, occurred_at, customer_id, version);
