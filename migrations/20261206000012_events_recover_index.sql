-- no-transaction
-- recover's index again (migration 10's customer_events_occurred, same columns), partial on
-- `occurred_at < 'infinity'`: a condition that holds for every row and that only recover's
-- statement states (webhooks::repo::deliveries::events_since), so that no statement about one
-- event is planned on it whatever the statistics say (as migrations 5 and 7).
--
-- Why: with statistics taken before the events were written (a bulk load, a fresh copy), the
-- webhook claim's read of each delivery's body by the primary key's columns
-- (org_id, mode, customer_id, version) costed the same on migration 10's index, whose leading
-- columns are (org_id, mode, occurred_at): the planner took it and walked the tenant's events
-- for every delivery (3.7 ms each, 85 % of a claim in the fan-out bench; docs/performance.md).
-- Migration 13 drops the old index once this one is built.
--
-- Built CONCURRENTLY (writes go on), hence a file of its own; IF NOT EXISTS so that a rerun
-- after an interrupted build can finish (drop an INVALID one first). Same cost per event as
-- the index it replaces.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customer_events_recover
    ON customer_events (org_id, mode, occurred_at, customer_id, version)
    WHERE occurred_at < 'infinity';
