-- Events are the audit trail: the service's role may read and append them, never change or
-- delete them. Migration 4 gave customers_app DELETE, and its tenant policy (FOR ALL) let a
-- statement bound to a tenant delete that tenant's events; a bug or an injected statement could
-- erase history. Only the retention job deletes, through the function below, which runs as the
-- owner of this migration and deletes nothing but events past the retention, in bounded batches.
--
-- Policies and grants only: no table is rewritten, no lock is held for longer than the catalog
-- changes take.

-- The tenant's rows: read and append, nothing else.
DROP POLICY tenant_rows ON customer_events;
CREATE POLICY tenant_reads ON customer_events FOR SELECT TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true));
CREATE POLICY tenant_appends ON customer_events FOR INSERT TO customers_app
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));

-- Deleting is no longer the service role's to do, whatever it sets in its session.
DROP POLICY retention_deletes_old ON customer_events;
REVOKE DELETE, UPDATE, TRUNCATE ON customer_events FROM customers_app;

-- Events JetStream refuses for good (larger than the server's max_payload, say) are set aside
-- here by the relay, which then publishes the events after them instead of retrying one event
-- for ever (docs/events-publication.md#events-jetstream-refuses). The event itself stays in
-- customer_events (the feed and the history still show it); this row says why it is not in the
-- stream. No personal data: ids, the tenant and the refusal.
CREATE TABLE event_undeliverable (
    id           text        PRIMARY KEY,
    feed_xid     bigint      NOT NULL,
    seq          bigint      NOT NULL,
    org_id       text        NOT NULL,
    mode         text        NOT NULL,
    reason       text        NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON event_undeliverable TO customers_app;
ALTER TABLE event_undeliverable ENABLE ROW LEVEL SECURITY;
-- Only the relay and the metrics (app.relay = on, as for reading every tenant's events) see or
-- write these rows; a tenant's statement sees none.
CREATE POLICY relay_rows ON event_undeliverable TO customers_app
    USING (current_setting('app.relay', true) = 'on')
    WITH CHECK (current_setting('app.relay', true) = 'on');

-- The retention job: one batch of at most `batch` (capped at 10,000) of the oldest events in feed
-- order, deleted when recorded before now() - retention, and, with `published_only` (the service
-- publishes to NATS), only those at or before the relay position. Oldest first by feed position,
-- so each batch is a short range of customer_events_relay however large the table. Set-aside rows
-- past the retention go too: their events are gone.
--
-- SECURITY DEFINER: it runs as its owner (the role that applies migrations, which owns the
-- table and is not subject to its policies), so customers_app needs no DELETE of its own. It
-- refuses a retention that is not above zero; what it can delete is bounded by the retention the
-- caller names, which is the setting events.retention (docs/security.md).
CREATE FUNCTION delete_events_past_retention(retention interval, published_only boolean,
                                             batch integer)
    RETURNS bigint
    LANGUAGE plpgsql
    SECURITY DEFINER
AS $$
DECLARE
    deleted bigint;
BEGIN
    IF retention IS NULL OR retention <= interval '0' THEN
        RAISE EXCEPTION 'the retention must be above zero';
    END IF;
    WITH oldest AS (
        SELECT e.ctid AS row, e.recorded_at
          FROM customer_events e
         WHERE e.occurred_at IS NOT NULL -- customer_events_relay is partial on it
           AND (NOT published_only
                OR (e.feed_xid, e.seq) <= (SELECT r.feed_xid, r.seq FROM event_relay r
                                            WHERE r.id = 1))
         ORDER BY e.feed_xid, e.seq
         LIMIT least(greatest(coalesce(batch, 1), 1), 10000)
    )
    DELETE FROM customer_events
     WHERE ctid IN (SELECT row FROM oldest WHERE recorded_at < now() - retention);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    DELETE FROM event_undeliverable WHERE set_aside_at < now() - retention;
    RETURN deleted;
END
$$;

-- A SECURITY DEFINER function must not resolve names through a search path the caller controls
-- (a temporary table named customer_events, say): pinned to this schema, pg_temp last.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION delete_events_past_retention(interval, boolean, integer) '
                   'SET search_path = %I, pg_temp', current_schema());
END
$$;

REVOKE ALL ON FUNCTION delete_events_past_retention(interval, boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION delete_events_past_retention(interval, boolean, integer)
    TO customers_app;
