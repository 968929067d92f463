-- Change history and events: every committed change to a customer is one row here, written in
-- the same statement (so the same transaction) as the change. The row is at once the audit
-- trail, the tenant's event feed and the transactional outbox that is published to NATS
-- JetStream. docs/events.md explains the design; the comments here say why each part is there.
CREATE TABLE customer_events (
    org_id      text        NOT NULL,
    mode        text        NOT NULL CHECK (mode IN ('test', 'live')),
    customer_id text        NOT NULL,
    -- The customer's version after the change; a customer's events are its versions, so
    -- (customer, version) is unique and orders the customer's history.
    version     bigint      NOT NULL CHECK (version >= 1),
    -- 'evt_' + a ULID, made by the service.
    id          text        NOT NULL CHECK (id ~ '^evt_[0-9A-HJKMNP-TV-Z]{26}$'),
    type        text        NOT NULL CHECK (type IN ('customer.created', 'customer.updated',
                                                     'customer.deleted', 'customer.activated')),
    -- The customer's updatedAt at this version (the event's occurredAt): what as-of reads search.
    occurred_at timestamptz NOT NULL,
    -- The feed's order is (feed_xid, seq). feed_xid is the id of the transaction that wrote the
    -- event, raised to at least the customer's previous event's (customers.event_xid): a
    -- follower shows only events whose feed_xid is below the oldest transaction still running
    -- (pg_snapshot_xmin), so it never steps past an event that could still commit, and a
    -- customer's events stay in version order. seq breaks ties in the order events were written.
    feed_xid    bigint      NOT NULL,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    -- The event exactly as the feed serves it and NATS receives it (json keeps the bytes;
    -- jsonb would reorder keys).
    body        json        NOT NULL,
    -- The wall clock when it was written, for the publication lag and the age of the oldest
    -- unpublished event.
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (org_id, mode, customer_id, version)
);

-- The tenant's feed, oldest first, by keyset on the feed position. Partial on a condition that
-- only the feed's own statements state (seq > 0 holds for every row), so that a statement about
-- one customer can never be planned on it: without statistics (after a bulk load or a restore)
-- PostgreSQL would otherwise read a customer's events by scanning the whole tenant's feed.
CREATE INDEX customer_events_feed ON customer_events (org_id, mode, feed_xid, seq)
    WHERE seq > 0;

-- The relay publishes every tenant's events in feed order. Partial on another condition that
-- only the relay states (occurred_at is never NULL), so that neither a tenant's feed (which would
-- then read every tenant's events and filter them) nor a statement about one customer is planned
-- on it.
CREATE INDEX customer_events_relay ON customer_events (feed_xid, seq)
    WHERE occurred_at IS NOT NULL;

-- The feed position of the customer's latest event: the next event's feed_xid is at least this.
ALTER TABLE customers ADD COLUMN event_xid bigint NOT NULL DEFAULT 0;

-- How far the relay has published: the feed position of the last event acknowledged by
-- JetStream. One row; the instance that holds the relay's advisory lock moves it.
CREATE TABLE event_relay (
    id         smallint    PRIMARY KEY CHECK (id = 1),
    feed_xid   bigint      NOT NULL,
    seq        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO event_relay (id, feed_xid, seq) VALUES (1, 0, 0);

GRANT SELECT, INSERT, DELETE ON customer_events TO customers_app;
GRANT SELECT, UPDATE ON event_relay TO customers_app;

-- Row-level security as on customers (migration 3): a statement sees and writes only the
-- tenant it bound. The relay and the metrics read every tenant's events: their transactions
-- set app.relay = on, which opens reading only.
ALTER TABLE customer_events ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_rows ON customer_events TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true))
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));

CREATE POLICY relay_reads_all ON customer_events FOR SELECT TO customers_app
    USING (current_setting('app.relay', true) = 'on');

-- The optional retention (events.retention, none by default) deletes events past it, across
-- tenants: its transaction sets app.retention = on (and app.relay, to read them).
CREATE POLICY retention_deletes_old ON customer_events FOR DELETE TO customers_app
    USING (current_setting('app.retention', true) = 'on');
