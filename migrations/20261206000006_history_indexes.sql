-- no-transaction
-- The tenant's feed filtered by one event type (`GET /v1/events?type=`), oldest first, by keyset
-- on the feed position. Without it the statement read the tenant's whole feed and kept the
-- events of that type: for a rare type (customer.deleted, say) every page and every caught-up
-- poll read every event of the tenant. With it a page reads the events of its type after the
-- cursor and nothing else.
--
-- Partial on `type IS NOT NULL`, a condition that holds for every row and that only the typed
-- feed statement implies (it states `type = $n`), so that, whatever the statistics say, no other
-- statement is planned on it: not the whole feed (which keeps `customer_events_feed`), not a
-- statement about one customer (which keeps the primary key). See migration 5 for why.
--
-- What it costs a write: one more index entry per event (org_id, mode, type, feed_xid, seq:
-- about 70 bytes with the tuple header, against about 1,310 bytes per event with the three
-- indexes before it), inserted in the same statement as the event. It makes no other index
-- redundant: the whole feed still needs `customer_events_feed` (its order is across types).
--
-- Built CONCURRENTLY (writes go on while it builds), hence a migration of its own without a
-- transaction: PostgreSQL runs a multi-statement simple query as one implicit transaction, in
-- which CREATE INDEX CONCURRENTLY is refused, so this file holds this one statement only.
CREATE INDEX CONCURRENTLY customer_events_feed_by_type
    ON customer_events (org_id, mode, type, feed_xid, seq)
    WHERE type IS NOT NULL;
