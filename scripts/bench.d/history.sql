-- Seeds a history for the `history` comparison of scripts/bench: 300 customers in
-- org_bench/test (ids 'cus_0HST...', apart from the 100,000 of seed.sql) and their events, straight
-- in SQL into the service's schema. Customer 1 has :big versions; each of the 299 others has
-- :each. Every 50th other customer's last event is a customer.deleted (the rare type); the rest
-- are one customer.created and then customer.updated events.
--
-- psql variables:  big    versions of customer 1 (the long history)
--                  each   versions of every other customer
--
-- Customer c was created at 2026-01-01T00:00:00Z + c days, its version v v - 1 seconds later; its feed
-- position is ordered by (v, c), so each customer's events are in version order in the feed, as
-- the service writes them (feed_xid = 3 + ordinal / 1000, and seq, taken in ordinal order, breaks
-- ties); every feed_xid is below any transaction id a server that ran a few hundred transactions
-- has running, so every event is visible to the feed.
\set ON_ERROR_STOP on

INSERT INTO customers (org_id, mode, id, type, status, email, metadata, version, created_at,
                       updated_at)
SELECT 'org_bench', 'test', 'cus_0HST' || lpad(c::text, 22, '0'), 'consumer', 'active',
       'history.' || c || '@example.com', '{"segment": "smb", "riskScore": 12}', versions,
       timestamptz '2026-01-01T00:00:00Z' + c * interval '1 day',
       timestamptz '2026-01-01T00:00:00Z' + c * interval '1 day'
         + (versions - 1) * interval '1 second'
  FROM (SELECT c, CASE WHEN c = 1 THEN :big ELSE :each END AS versions
          FROM generate_series(1, 300) AS c) AS s;

INSERT INTO customer_events (org_id, mode, customer_id, version, id, type, occurred_at, feed_xid,
                             body, recorded_at)
SELECT 'org_bench', 'test', customer_id, v, event_id, kind, at, 3 + ordinal / 1000,
       json_build_object(
         'id', event_id, 'type', kind, 'customerId', customer_id, 'version', v,
         'occurredAt', at, 'actor', json_build_object('sub', 'bench'),
         'requestId', 'req_' || ordinal, 'idempotencyKey', NULL,
         'data', json_build_object(
           'object', json_build_object(
             'id', customer_id, 'type', 'consumer',
             'status', CASE WHEN kind = 'customer.deleted' THEN 'deleted' ELSE 'active' END,
             'email', 'history.' || c || '@example.com', 'phone', NULL,
             'policy', json_build_object('requireIntent', true,
                                         'limits', json_build_object('perDay', 100000 + v)),
             'metadata', json_build_object('segment', 'smb', 'riskScore', 12, 'n', v),
             'createdAt', created, 'updatedAt', at),
           'previous', CASE WHEN v > 1 THEN json_build_object(
             'metadata', json_build_object('n', v - 1),
             'updatedAt', at - interval '1 second') END)),
       at
  FROM (SELECT c, v, 'cus_0HST' || lpad(c::text, 22, '0') AS customer_id,
               'evt_0HST' || lpad(upper(to_hex(row_number() OVER (ORDER BY v, c))), 22, '0')
                 AS event_id,
               row_number() OVER (ORDER BY v, c) AS ordinal,
               CASE WHEN v = 1 THEN 'customer.created'
                    WHEN c > 1 AND c % 50 = 0 AND v = versions THEN 'customer.deleted'
                    ELSE 'customer.updated' END AS kind,
               timestamptz '2026-01-01T00:00:00Z' + c * interval '1 day' AS created,
               timestamptz '2026-01-01T00:00:00Z' + c * interval '1 day'
                 + (v - 1) * interval '1 second' AS at
          FROM (SELECT c, CASE WHEN c = 1 THEN :big ELSE :each END AS versions
                  FROM generate_series(1, 300) AS c) AS s,
               generate_series(1, versions) AS v) AS e
 ORDER BY ordinal;

-- The webhook dispatcher starts at the newest event stored when its table was made (no webhook
-- existed before); events seeded after the migrations would otherwise be walked through by the
-- first server of the comparison (400 rounds on the large tenant), during its measured runs.
UPDATE webhook_dispatch SET (feed_xid, seq) = (SELECT max(feed_xid), max(seq) FROM customer_events);
