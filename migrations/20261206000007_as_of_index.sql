-- no-transaction
-- `GET /v1/customers/{id}?asOf=`: the customer's last event at or before an instant, in one
-- probe. Without it the statement read the customer's versions newest first until one was old
-- enough: an instant just after the creation of a customer with 20,000 versions read all of
-- them. (A binary search over the primary key, about 15 probes, is bounded too and costs a
-- write nothing; it was tried, and measured no better than this one probe: see
-- docs/performance.md. This index is the simpler statement.)
--
-- Partial on `occurred_at > '-infinity'`, a condition that holds for every row and that only the
-- as-of statement states, so that, whatever the statistics say, no other statement about one
-- customer is planned on it (they keep the primary key; see migration 5 for why that matters).
--
-- What it costs a write: one more index entry per event (org_id, mode, customer_id,
-- occurred_at, version: about 90 bytes with the tuple header), inserted in the same statement
-- as the event. It makes no other index redundant.
--
-- Built CONCURRENTLY, hence a migration of its own holding this one statement (see migration 6).
CREATE INDEX CONCURRENTLY customer_events_as_of
    ON customer_events (org_id, mode, customer_id, occurred_at, version)
    WHERE occurred_at > '-infinity';
