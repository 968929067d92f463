#!/usr/bin/env bash
# The same-work ceiling: what PostgreSQL alone sustains for exactly the statements the service
# sends for each route, in the same transaction shape, as the role the service uses, with no HTTP
# and no service in between. scripts/bench runs it beside ceiling.sh (the minimal ceiling: one
# bare statement per route) in the same run, on a copy of the same template:
#
#   service / same-work   what everything that is not the database costs (HTTP, the service's
#                         CPU, its round trips' wake-ups on the shared cores)
#   same-work / minimal   what our schema asks the database to do beyond the bare statement
#                         (the tenant binding and row-level security, the event row and its
#                         index entries, the compare-and-set, the idempotency save)
#
#   get         find_to_show                                         GET /v1/customers/{id}
#   patch       the write statement: compare-and-set, event, save    PATCH, the cached guess
#               (no key: no transaction, one statement)              (one round trip)
#   patch_idem  BEGIN; claim and read; write, event, save; COMMIT    PATCH with Idempotency-Key
#   create      the insert statement: customer, event, save          POST /v1/customers
#   list        the first page of 50 of the default listing          GET /v1/customers?limit=50
#
# The statements are taken from .sqlx/ (sqlx's record of the checked statements, so exactly the
# text the binary prepares) by scripts/bench.d/samework.py, whose header says what each
# parameter is bound to. Every connection does what the service's do when they open
# (src/db/mod.rs): role customers_app (row-level security applies), enable_seqscan off, jit off.
#
# usage: scripts/bench.d/samework.sh DATABASE_URL
#   DATABASE_URL: a database migrated by customers-api whose org_bench/test customers were
#   seeded by scripts/bench.d/seed.sql, as a superuser (to create the numbered list and set the
#   role). The writes change rows: scripts/bench passes a scratch copy.
# env: CLIENTS (16) THREADS (2) SECONDS_EACH (15) SAMEWORK_SCENARIOS ("get patch patch_idem
#      create list") REPO (the checkout whose .sqlx/ to read)
#      SAMEWORK_ROLE (customers_app; empty: the URL's own role, which as a superuser bypasses
#      row-level security) SAMEWORK_EXTRA (a directory of more pgbench scripts, NAME.sql, to
#      name in SAMEWORK_SCENARIOS: variants of the statements, to find what a part of them
#      costs; they get the same variables)
# prints one line per scenario:  samework NAME tps=N latency_ms=N
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=${REPO:-$(cd "$here/../.." && pwd)}
url=${1:?usage: samework.sh DATABASE_URL}
clients=${CLIENTS:-16}
threads=${THREADS:-2}
seconds=${SECONDS_EACH:-15}
command -v pgbench >/dev/null || { echo "pgbench is missing (Debian: postgresql-15 or postgresql-contrib)" >&2; exit 1; }

scripts=$(mktemp -d)
cleanup() {
  psql -qX "$url" -c "DROP TABLE IF EXISTS samework_targets" >/dev/null 2>&1 || true
  rm -rf "$scripts"
}
trap cleanup EXIT
python3 "$here/samework.py" "$scripts" "$repo"
[[ -z ${SAMEWORK_EXTRA:-} ]] || cp "$SAMEWORK_EXTRA"/*.sql "$scripts/"
role=${SAMEWORK_ROLE-customers_app}

# The live customers, numbered (as ceiling.sh's list), readable by the service's role.
psql -qX -v ON_ERROR_STOP=1 "$url" >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS samework_targets;
CREATE UNLOGGED TABLE samework_targets AS
  SELECT row_number() OVER (ORDER BY created_at, id)::int AS n, id
    FROM customers WHERE org_id = 'org_bench' AND mode = 'test' AND status <> 'deleted';
ALTER TABLE samework_targets ADD PRIMARY KEY (n);
ANALYZE samework_targets;
GRANT SELECT ON samework_targets TO customers_app;
SQL
targets=$(psql -qXAt "$url" -c "SELECT count(*) FROM samework_targets")
[[ $targets -gt 0 ]] || { echo "no org_bench/test customers in $url (seed it with scripts/bench.d/seed.sql)" >&2; exit 1; }

# The values of a typical write, from a seeded customer with a policy: its policy with the
# PATCH's perDay, its metadata, its answer (the customer's JSON as GET shows it) and the event
# bodies of an update (the customer and data.previous) and of a creation, as the service builds
# them (the same members and about the same sizes: docs/performance.md, bytes per event).
IFS=$'\t' read -r policy metadata reply event_body created_body < <(psql -qXAt -F $'\t' -v ON_ERROR_STOP=1 "$url" <<'SQL'
WITH c AS (
  SELECT c.*, jsonb_set(policy, '{limits,perDay}', '123000') AS next_policy
    FROM customers c WHERE org_id = 'org_bench' AND mode = 'test' AND status = 'active'
     AND policy ? 'limits' AND policy ? 'allowedMccs' AND phone IS NOT NULL AND email IS NOT NULL
   ORDER BY created_at LIMIT 1),
o AS (
  SELECT c.*, jsonb_build_object('id', id, 'object', 'customer', 'type', type, 'status', status,
           'email', email, 'phone', phone, 'name', jsonb_build_object('first', first_name, 'last', last_name),
           'policy', next_policy, 'metadata', metadata, 'version', version + 1,
           'createdAt', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'updatedAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) AS object
    FROM c)
SELECT next_policy::text, metadata::text, '\x' || encode(convert_to(object::text, 'UTF8'), 'hex'),
       jsonb_build_object('id', 'evt_01KBSAMEWORK0000000000000', 'type', 'customer.updated',
         'customerId', id, 'version', version + 1, 'occurredAt', object->'updatedAt',
         'actor', jsonb_build_object('sub', 'bench-client'),
         'requestId', '01KBSAMEWORK00000000000000', 'idempotencyKey', NULL,
         'data', jsonb_build_object('object', object, 'previous',
           jsonb_build_object('policy', jsonb_build_object('limits', jsonb_build_object('perDay', policy->'limits'->'perDay')),
                              'updatedAt', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))))::text,
       jsonb_build_object('id', 'evt_01KBSAMEWORK0000000000001', 'type', 'customer.created',
         'customerId', id, 'version', 1, 'occurredAt', object->'updatedAt',
         'actor', jsonb_build_object('sub', 'bench-client'),
         'requestId', '01KBSAMEWORK00000000000000', 'idempotencyKey', NULL,
         'data', jsonb_build_object('object', object))::text
  FROM o
SQL
)
[[ -n ${created_body:-} ]] || { echo "no seeded customer with a policy in $url" >&2; exit 1; }

vars=(-D targets="$targets" -D org=org_bench -D mode=test -D binding=test/org_bench
  -D policy="$policy" -D metadata="$metadata" -D reply="$reply" -D event_body="$event_body"
  -D created_body="$created_body" -D etag='"2"' -D fingerprint="\\x$(printf '%064d' 0)"
  -D retention=86400 -D wait_ms=1000 -D phone=+14155550100 -D first_name=Bench -D last_name=User)

for scenario in ${SAMEWORK_SCENARIOS:-get patch patch_idem create list}; do
  out=$(PGOPTIONS="${role:+-c role=$role }-c enable_seqscan=off -c jit=off" \
    pgbench -n -M prepared -c "$clients" -j "$threads" -T "$seconds" "${vars[@]}" \
    -f "$scripts/$scenario.sql" "$url" 2>&1) || { { grep -m3 error <<<"$out"; tail -3 <<<"$out"; } >&2; exit 1; }
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  latency=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' <<<"$out")
  [[ -n $tps ]] || { { grep -m3 error <<<"$out"; tail -3 <<<"$out"; } >&2; exit 1; }
  echo "samework $scenario tps=$tps latency_ms=$latency"
done
