-- no-transaction
-- The delivery log's index again (migration 9's webhook_deliveries_log, same columns), partial
-- on `created_at < 'infinity'`: a condition that holds for every row and that only the log's
-- statements state (a webhook's deliveries listed, and its pending ones ended when it is
-- disabled: webhooks::repo::deliveries::list and fail_pending, and the senders' disabling in
-- consumers::dispatcher::outbox::claims), so that no statement about one delivery is planned on
-- it whatever the statistics say (as migrations 5, 7 and 12).
--
-- Why: with statistics taken before the deliveries were written (a fresh copy, a bulk load),
-- the foreign-key check of each attempt inserted (webhook_attempts -> webhook_deliveries) and
-- the claim's update by key, both on (org_id, mode, id), costed the same on migration 9's
-- index, whose leading columns are (org_id, mode): the planner took it and walked the tenant's
-- deliveries for each one (the recording of a batch took 1-3 s in the fan-out bench;
-- docs/performance.md). Migration 15 drops the old index once this one is built.
--
-- Built CONCURRENTLY (writes go on), hence a file of its own; IF NOT EXISTS so that a rerun
-- after an interrupted build can finish (drop an INVALID one first). Same cost per delivery as
-- the index it replaces.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_by_webhook
    ON webhook_deliveries (org_id, mode, webhook_id, created_at DESC, id DESC)
    WHERE created_at < 'infinity';
