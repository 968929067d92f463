-- Idempotency keys: one row per (tenant, key), holding the stored response of the request that
-- first used the key.
--
-- The row is inserted at the start of the request's transaction and filled in with the response
-- before that same transaction commits, together with the business write. So a committed row
-- always has its response, a crashed request leaves no row (its transaction never commits), and
-- a second request with the same key blocks on the uncommitted row until the first one ends —
-- which is how "wait for the in-flight request, then replay" works across several instances.
CREATE TABLE idempotency_keys (
    org_id      text        NOT NULL,
    mode        text        NOT NULL CHECK (mode IN ('test', 'live')),
    key         text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- sha256 of method, path and the canonical form of the parsed body.
    fingerprint bytea       NOT NULL CHECK (length(fingerprint) = 32),
    -- NULL only inside the claiming transaction; never visible to other transactions.
    status_code smallint    CHECK (status_code BETWEEN 100 AND 599),
    -- The response body exactly as sent (bytea, not jsonb, so a replay is byte for byte).
    body        bytea,
    location    text,
    etag        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (org_id, mode, key),
    CHECK ((status_code IS NULL) = (body IS NULL))
);

-- The sweeper deletes expired rows oldest first in small batches; this index lets it find them
-- without scanning the table.
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
