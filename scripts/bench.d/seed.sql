-- Seeds customers for the load benchmark, straight in SQL (the service's own schema from
-- migrations/, which the server applied at start).
--
-- psql variables:  org, mode   the tenant
--                  lo, hi      the customer numbers n to insert (inclusive)
--                  deleted     every n divisible by this is soft-deleted (0: none)
--
-- Customer n gets a deterministic id that the wrk Lua scripts compute the same way
-- (scripts/bench.d/common.lua), so requests can pick random existing customers without a list:
--   created_at = 2025-01-01T00:00:00Z + n * 7919 ms      (distinct per row, millisecond precision)
--   id = 'cus_' || ULID: 10 Crockford base32 chars of created_at in ms (as the service does)
--                      || 8 chars of (n * 3^18 + 123456789) mod 2^40
--                      || 8 chars of (n * 5^12 + 987654321) mod 2^40
-- so ordering by id and by (created_at, id) agree, as for ids the service makes.
--
-- Policies obey the service's rules: perAuth <= perDay <= perMonth (perAuth <= 50,000 and
-- perMonth >= 200,000 whenever they are set, so a PATCH of perDay within [50,000, 200,000] is
-- always valid), no MCC both allowed and blocked; 1 in 10 customers has no policy at all.
\set ON_ERROR_STOP on

CREATE FUNCTION pg_temp.b32(v bigint, len int) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
                           ((v >> (5 * (len - 1 - i))) & 31)::int + 1, 1), '' ORDER BY i)
    FROM generate_series(0, len - 1) AS i
$$;

INSERT INTO customers (org_id, mode, id, type, status, email, phone, first_name, last_name,
                       policy, metadata, version, created_at, updated_at)
SELECT :'org', :'mode',
       'cus_' || pg_temp.b32(ms, 10)
              || pg_temp.b32((n * 387420489 + 123456789) % 1099511627776, 8)
              || pg_temp.b32((n * 244140625 + 987654321) % 1099511627776, 8),
       CASE WHEN n % 7 = 0 THEN 'corporate' ELSE 'consumer' END,
       CASE WHEN :deleted > 0 AND n % :deleted = 0 THEN 'deleted'
            WHEN n % 13 = 0 THEN 'pending' ELSE 'active' END,
       CASE WHEN n % 17 = 0 THEN NULL
            ELSE lower(first) || '.' || lower(last) || '.' || n || '@' ||
                 (ARRAY['example.com', 'example.org', 'agents.example.net', 'mail.example'])[1 + n % 4] END,
       CASE WHEN n % 3 = 0 THEN NULL ELSE '+1415' || lpad((n % 10000000)::text, 7, '0') END,
       first, last,
       CASE WHEN n % 10 = 0 THEN NULL ELSE jsonb_strip_nulls(jsonb_build_object(
           'requireIntent', n % 2 = 0,
           'requireAttestation', CASE WHEN n % 5 = 0 THEN true END,
           'requireApproval', CASE WHEN n % 11 = 0 THEN true END,
           'autoApproveBelow', CASE WHEN n % 11 = 0 THEN 2500 END,
           'attestationWindowMinutes', CASE WHEN n % 5 = 0 THEN 1 + n % 60 END,
           'cooldownMinutes', CASE WHEN n % 8 = 0 THEN 15 END,
           'ttlDays', CASE WHEN n % 9 = 0 THEN 30 + n % 300 END,
           'limits', CASE WHEN n % 20 = 1 THEN NULL ELSE jsonb_build_object(
                'perAuth', 1000 * (1 + n % 50),
                'perDay', 100000 + 1000 * (n % 100),
                'perMonth', 200000 + 50000 * (n % 40)) END,
           'allowedMccs', CASE WHEN n % 4 <> 3 THEN
                (ARRAY['["5734","5817","5818"]', '["4816","5734"]', '["5045","5734","7372","4814"]',
                       '["5968"]'])[1 + n % 4]::jsonb END,
           'blockedMccs', CASE WHEN n % 6 = 0 THEN '["7995","5993"]'::jsonb END,
           'allowedMerchants', CASE WHEN n % 12 = 0 THEN '["OpenAI","Anthropic","AWS"]'::jsonb END))
       END,
       jsonb_strip_nulls(jsonb_build_object(
           'externalId', 'ext_' || lpad(n::text, 9, '0'),
           'segment', (ARRAY['smb', 'enterprise', 'consumer', 'startup'])[1 + n % 4],
           'region', (ARRAY['us-east', 'us-west', 'eu-central', 'ap-south', 'sa-east'])[1 + n % 5],
           'agent', (ARRAY['shopping-assistant', 'travel-booker', 'procurement-bot'])[1 + n % 3],
           'costCenter', CASE WHEN n % 2 = 0 THEN 'cc-' || (n % 500) END,
           'riskScore', (n * 37) % 100,
           'tags', CASE WHEN n % 3 = 0 THEN '["beta","priority"]'::jsonb END)),
       1 + n % 3,
       created_at, created_at + make_interval(secs => (n % 86400))
  FROM (SELECT n, ms, timestamptz 'epoch' + ms * interval '1 millisecond' AS created_at,
               (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken',
                      'Radia', 'Leslie', 'Margaret', 'Dennis'])[1 + n % 12] AS first,
               (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen',
                      'Thompson', 'Perlman', 'Lamport', 'Hamilton', 'Ritchie', 'Wirth'])[1 + n % 13] AS last
          FROM (SELECT n::bigint AS n, 1735689600000 + n::bigint * 7919 AS ms
                  FROM generate_series(:lo::bigint, :hi::bigint) AS n) AS g) AS s;
