#!/usr/bin/env bash
# What PostgreSQL alone sustains for the database work behind the hot routes, with no HTTP and no
# service in between: pgbench at the benchmark's own concurrency, on a database of the service's
# own schema and rows. scripts/bench divides each route's req/s by these figures, measured in the
# same run, so that a busy machine moves both sides alike (docs/performance.md#the-bench).
#
#   get         one SELECT of a customer by tenant and id                GET /v1/customers/{id}
#   patch       one UPDATE ... RETURNING of its policy                   PATCH without Idempotency-Key
#   patch_idem  BEGIN; claim a key; SELECT ... FOR UPDATE; UPDATE; store the answer; COMMIT
#                                                                        PATCH with Idempotency-Key
#   create      one INSERT of a customer                                 POST /v1/customers
#   list        one SELECT of the tenant's 50 newest live customers      GET /v1/customers?limit=50
# (the reference workload in ../shared/bench has the first three; create and list are this
# script's, the same bare shape, so that every route of scripts/bench has a minimal ceiling.)
# The service does a little more than this (the tenant's row-level security setting, the event
# of a write, the response): the ratio says how much of the database's capacity it keeps.
#
# usage: scripts/bench.d/ceiling.sh DATABASE_URL
#   DATABASE_URL: a database migrated by customers-api whose org_bench/test customers were
#   seeded by scripts/bench.d/seed.sql (scripts/bench passes a scratch copy of its template; the
#   writes change rows, so do not point it at a database you keep). As a superuser, as the
#   benchmark's admin URL is, the statements bypass row-level security.
# env: CLIENTS (16) THREADS (2) SECONDS_EACH (15)
#      CEILING_SCENARIOS ("get patch patch_idem create list")
# prints one line per scenario:  ceiling NAME tps=N latency_ms=N
set -euo pipefail

url=${1:?usage: ceiling.sh DATABASE_URL}
clients=${CLIENTS:-16}
threads=${THREADS:-2}
seconds=${SECONDS_EACH:-15}
command -v pgbench >/dev/null || { echo "pgbench is missing (Debian: apt-get install postgresql-contrib or postgresql-15)" >&2; exit 1; }

scripts=$(mktemp -d)
cleanup() {
  psql -qX "$url" -c "DROP TABLE IF EXISTS ceiling_targets" >/dev/null 2>&1 || true
  rm -rf "$scripts"
}
trap cleanup EXIT

# pgbench draws numbers, the seeded ids are strings: a numbered list of the live customers
# (PATCH skips deleted ones too). Looking an id up in it is one index probe inside the statement,
# not a round trip.
psql -qX -v ON_ERROR_STOP=1 "$url" >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS ceiling_targets;
CREATE UNLOGGED TABLE ceiling_targets AS
  SELECT row_number() OVER (ORDER BY created_at, id)::int AS n, id
    FROM customers WHERE org_id = 'org_bench' AND mode = 'test' AND status <> 'deleted';
ALTER TABLE ceiling_targets ADD PRIMARY KEY (n);
ANALYZE ceiling_targets;
SQL
targets=$(psql -qXAt "$url" -c "SELECT count(*) FROM ceiling_targets")
[[ $targets -gt 0 ]] || { echo "no org_bench/test customers in $url (seed it with scripts/bench.d/seed.sql)" >&2; exit 1; }

target="(SELECT id FROM ceiling_targets WHERE n = :n)"
tenant="org_id = 'org_bench' AND mode = 'test'"
set_policy="policy = jsonb_set(coalesce(policy, '{\"limits\": {}}'), '{limits,perDay}', to_jsonb(50000 + :n % 1000)),
    version = version + 1, updated_at = now()"

cat >"$scripts/get.sql" <<EOF
\set n random(1, :targets)
SELECT * FROM customers WHERE $tenant AND id = $target;
EOF
cat >"$scripts/patch.sql" <<EOF
\set n random(1, :targets)
UPDATE customers SET $set_policy WHERE $tenant AND id = $target RETURNING *;
EOF
cat >"$scripts/patch_idem.sql" <<EOF
\set n random(1, :targets)
\set k random(1, 1000000000)
BEGIN;
INSERT INTO idempotency_keys (org_id, mode, key, fingerprint, expires_at)
  VALUES ('org_bench', 'test', 'ceiling-' || :client_id || '-' || :k, sha256('ceiling'::bytea), now() + interval '24 hours')
  ON CONFLICT DO NOTHING;
SELECT * FROM customers WHERE $tenant AND id = $target FOR UPDATE;
UPDATE customers SET $set_policy WHERE $tenant AND id = $target RETURNING *;
UPDATE idempotency_keys SET status_code = 200, body = '{}'::bytea
  WHERE $tenant AND key = 'ceiling-' || :client_id || '-' || :k;
COMMIT;
EOF

# Ids that sort after every seeded one and grow with time, as the service's do.
cat >"$scripts/create.sql" <<EOF
INSERT INTO customers (org_id, mode, id, type, status, email, phone, first_name, last_name,
                       policy, metadata, version, created_at, updated_at)
  VALUES ('org_bench', 'test',
          'cus_Y' || lpad(((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)::text, 17, '0')
                  || lpad(:client_id::text, 8, '0'),
          'consumer', 'active', 'ceiling.' || :client_id || '.' || random() || '@example.com',
          '+14155550100', 'Bench', 'User',
          '{"requireIntent": true, "limits": {"perAuth": 5000, "perDay": 100000, "perMonth": 500000}, "allowedMccs": ["5734", "5817"]}',
          '{"externalId": "new_1", "segment": "smb", "riskScore": 1}', 1, now(), now());
EOF
cat >"$scripts/list.sql" <<EOF
SELECT * FROM customers WHERE $tenant AND status <> 'deleted' ORDER BY created_at DESC, id DESC LIMIT 50;
EOF

for scenario in ${CEILING_SCENARIOS:-get patch patch_idem create list}; do
  out=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" -D targets="$targets" \
    -f "$scripts/$scenario.sql" "$url" 2>&1) || { { grep -m3 error <<<"$out"; tail -3 <<<"$out"; } >&2; exit 1; }
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  latency=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' <<<"$out")
  [[ -n $tps ]] || { { grep -m3 error <<<"$out"; tail -3 <<<"$out"; } >&2; exit 1; }
  echo "ceiling $scenario tps=$tps latency_ms=$latency"
done
