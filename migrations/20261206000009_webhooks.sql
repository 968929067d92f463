-- Webhooks: signed HTTP deliveries of the committed events (customer_events) to partners'
-- endpoints. docs/webhooks.md explains the design; the comments here say why each part is there.
--
-- Every table is new, so its indexes are built here, on empty tables, in the migration's
-- transaction (nothing to lock but the new table). The one index on an existing table
-- (customer_events, for recover) is built CONCURRENTLY in the next migration.

CREATE TABLE webhooks (
    org_id          text        NOT NULL,
    mode            text        NOT NULL CHECK (mode IN ('test', 'live')),
    -- 'whk_' + a ULID, made by the service.
    id              text        NOT NULL CHECK (id ~ '^whk_[0-9A-HJKMNP-TV-Z]{26}$'),
    url             text        NOT NULL,
    -- Event types to deliver; empty: every type.
    events          text[]      NOT NULL DEFAULT '{}',
    enabled         boolean     NOT NULL DEFAULT true,
    description     text,
    metadata        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    -- Why it is disabled; NULL exactly when it is enabled.
    disabled_reason text        CHECK (disabled_reason IN ('manual', 'gone', 'failing')),
    -- Since when no attempt has succeeded (NULL: the last attempt succeeded, or none was made):
    -- past webhooks.disable_after the webhook is disabled as 'failing'.
    failing_since   timestamptz,
    version         bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (org_id, mode, id),
    CHECK (enabled = (disabled_reason IS NULL))
);

-- The tenant's webhooks, newest first (the list's keyset), and the dispatcher's lookup of a
-- tenant's enabled webhooks (org_id, mode prefix). One index entry per webhook write.
CREATE INDEX webhooks_list ON webhooks (org_id, mode, created_at DESC, id DESC);

-- A webhook's signing secrets, encrypted (ChaCha20-Poly1305, key webhooks.secrets_key, the
-- webhook's tenant and id as associated data so a ciphertext cannot be moved to another one).
-- The current secret has expires_at NULL; a rotated-out one signs beside it until expires_at.
CREATE TABLE webhook_secrets (
    org_id     text        NOT NULL,
    mode       text        NOT NULL,
    webhook_id text        NOT NULL,
    n          bigint      GENERATED ALWAYS AS IDENTITY,
    -- nonce (12 bytes) || ciphertext with its tag
    sealed     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    PRIMARY KEY (org_id, mode, webhook_id, n),
    FOREIGN KEY (org_id, mode, webhook_id) REFERENCES webhooks (org_id, mode, id)
);

-- One delivery of one event to one webhook. Its attempts are in webhook_attempts.
CREATE TABLE webhook_deliveries (
    org_id          text        NOT NULL,
    mode            text        NOT NULL,
    -- 'dlv_' + a ULID, made by the service.
    id              text        NOT NULL CHECK (id ~ '^dlv_[0-9A-HJKMNP-TV-Z]{26}$'),
    webhook_id      text        NOT NULL,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    -- The event's key in customer_events, to read its body (byte for byte) at each attempt.
    customer_id     text        NOT NULL,
    event_version   bigint      NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- Attempts made so far (the place in webhooks.retry_schedule).
    attempts        integer     NOT NULL DEFAULT 0,
    -- When it is due; NULL once it has ended. A claimed delivery's is pushed to the end of its
    -- lease (timeout + margin): an instance killed mid-attempt leaves it due again then, and no
    -- other instance takes it before (FOR UPDATE SKIP LOCKED at the claim).
    next_attempt_at timestamptz,
    -- Incremented by every claim: an attempt's outcome is recorded only by the claim that
    -- still holds it.
    claims          integer     NOT NULL DEFAULT 0,
    -- Until when the claim's attempt may run (NULL: not claimed): a retry asked for meanwhile
    -- does not make it due again while it is in flight.
    leased_until    timestamptz,
    -- When the event was recorded (database clock), for the commit-to-first-attempt metric.
    event_recorded_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, mode, id),
    FOREIGN KEY (org_id, mode, webhook_id) REFERENCES webhooks (org_id, mode, id),
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);

-- The delivery log of one webhook, newest first (with the status filter applied on it), and
-- the pending deliveries of a webhook that is disabled. One entry per delivery written.
CREATE INDEX webhook_deliveries_log
    ON webhook_deliveries (org_id, mode, webhook_id, created_at DESC, id DESC);

-- The senders' claim of due deliveries, across tenants, soonest first. Partial: ended
-- deliveries leave it, so it holds only the backlog. Each claim and outcome moves an entry.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

-- The log's retention (webhooks.log_retention) deletes ended deliveries, oldest first, across
-- tenants. An entry per ended delivery (written when it ends).
CREATE INDEX webhook_deliveries_ended ON webhook_deliveries (created_at)
    WHERE status <> 'pending';

CREATE TABLE webhook_attempts (
    org_id        text        NOT NULL,
    mode          text        NOT NULL,
    delivery_id   text        NOT NULL,
    -- 1, 2, ...: the attempt's number within its delivery.
    n             integer     NOT NULL,
    at            timestamptz NOT NULL,
    status_code   integer,
    duration_ms   integer     NOT NULL,
    error         text,
    -- The first 4 KiB of the response body (lossily decoded as UTF-8).
    response_body text,
    PRIMARY KEY (org_id, mode, delivery_id, n),
    -- A delivery past webhooks.log_retention goes with its attempts.
    FOREIGN KEY (org_id, mode, delivery_id) REFERENCES webhook_deliveries (org_id, mode, id)
        ON DELETE CASCADE
);

-- How far the dispatcher has turned events into deliveries: a feed position, as event_relay's
-- (migration 4). It starts at the newest event already stored: no webhook existed before.
CREATE TABLE webhook_dispatch (
    id         smallint    PRIMARY KEY CHECK (id = 1),
    feed_xid   bigint      NOT NULL,
    seq        bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO webhook_dispatch (id, feed_xid, seq)
SELECT 1, COALESCE(max(feed_xid), 0), COALESCE(max(seq), 0) FROM customer_events;

GRANT SELECT, INSERT, UPDATE ON webhooks, webhook_secrets TO customers_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_deliveries, webhook_attempts TO customers_app;
GRANT SELECT, UPDATE ON webhook_dispatch TO customers_app;

-- Row-level security as on customers (migration 3): a statement sees and writes only the
-- tenant it bound. The dispatcher and the senders work across tenants: their transactions set
-- app.webhooks = on, which opens these tables and reading customer_events.
ALTER TABLE webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_rows ON webhooks TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true))
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));
CREATE POLICY tenant_rows ON webhook_secrets TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true))
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));
CREATE POLICY tenant_rows ON webhook_deliveries TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true))
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));
CREATE POLICY tenant_rows ON webhook_attempts TO customers_app
    USING (mode || '/' || org_id = current_setting('app.tenant', true))
    WITH CHECK (mode || '/' || org_id = current_setting('app.tenant', true));

CREATE POLICY dispatcher_all ON webhooks TO customers_app
    USING (current_setting('app.webhooks', true) = 'on')
    WITH CHECK (current_setting('app.webhooks', true) = 'on');
CREATE POLICY dispatcher_all ON webhook_secrets TO customers_app
    USING (current_setting('app.webhooks', true) = 'on')
    WITH CHECK (current_setting('app.webhooks', true) = 'on');
CREATE POLICY dispatcher_all ON webhook_deliveries TO customers_app
    USING (current_setting('app.webhooks', true) = 'on')
    WITH CHECK (current_setting('app.webhooks', true) = 'on');
CREATE POLICY dispatcher_all ON webhook_attempts TO customers_app
    USING (current_setting('app.webhooks', true) = 'on')
    WITH CHECK (current_setting('app.webhooks', true) = 'on');
-- A new policy on an existing table: a catalog change, no rewrite (a brief lock).
CREATE POLICY webhooks_read_all ON customer_events FOR SELECT TO customers_app
    USING (current_setting('app.webhooks', true) = 'on');
