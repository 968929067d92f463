-- no-transaction
-- Migration 9's index, replaced by migration 14's partial one (see there). CONCURRENTLY: it
-- waits for the statements using it instead of locking writes out; a file of its own because
-- it cannot run in a transaction.
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_log;
