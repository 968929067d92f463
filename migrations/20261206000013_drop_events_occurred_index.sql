-- no-transaction
-- Migration 10's index, replaced by migration 12's partial one (see there). CONCURRENTLY: it
-- waits for the statements using it instead of locking writes out; a file of its own because
-- it cannot run in a transaction.
DROP INDEX CONCURRENTLY IF EXISTS customer_events_occurred;
