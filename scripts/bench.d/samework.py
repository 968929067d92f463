#!/usr/bin/env python3
"""Writes the pgbench scripts of the same-work ceiling (scripts/bench.d/samework.sh).

Each route's script sends the statements the service sends for it, in the same transaction
shape, taken verbatim from the statements sqlx checked at build time (.sqlx/query-*.json,
found by the marker below); the list page's statement is built at run time by
`customers::repo::list` (QueryBuilder, not in .sqlx/) and is written out here as that code
builds it for the first page of the default listing.

What a statement binds is per request in the service; pgbench binds variables (`:name`,
sent as parameters with -M prepared) or, where a value depends on the row, an expression in
its place:

  id            (SELECT id FROM samework_targets WHERE n = :n): one probe of a numbered list
                of the live customers, as ceiling.sh does for the minimal ceiling
  expected version and xmin of the compare-and-set
                the row's own `version` and `xmin`: the guess is current, as it is when the
                service's cache of recent customers holds the row (the one-round-trip PATCH)
  status, email, phone, names of the next version
                the row's own values: a PATCH of the policy leaves them as they are (and so
                may be a HOT update, as the service's is)
  version, updated_at of the next version
                version + 1, now()
  policy, metadata
                variables: the JSON of a typical customer (the service binds the merged
                values; these are the same sizes)
  event id, key, new customer id
                built from :client_id and a random number (unique within a run)
  event body, stored reply
                variables: an event body and an answer of the sizes the service writes
                (built by samework.sh from a seeded customer)
  trace context, location, the key of a write without one
                NULL (traces not exported; a PATCH has no Location)
  a variable's type
                cast where it stands (`:org::text`): the type the service's statement gives
                that parameter (.sqlx/'s describe); pgbench binds every use of a variable as a
                parameter of its own, which PostgreSQL could not always type otherwise

usage: samework.py OUT_DIR [REPO]   writes OUT_DIR/{get,patch,patch_idem,create,list}.sql
"""
import glob
import json
import os
import re
import sys

# A marker of each statement's text, unique among .sqlx/ queries.
MARKERS = {
    "find_to_show": 'policy AS "policy: StoredJson"',
    "claim_and_find": "LEFT JOIN customers c ON c.org_id = $1",
    "update": "WITH written AS (UPDATE customers",
    "insert": "WITH written AS (INSERT INTO customers",
}

# customers::repo::list for the first page of the default listing: tenant, binding, limit.
LIST = (
    "SELECT id, type AS kind, status, email, phone, first_name, last_name, policy, metadata, "
    "version, created_at, updated_at "
    "FROM customers WHERE org_id = $1 AND mode = $2 "
    "AND (SELECT set_config('app.tenant', $3, true)) IS NOT NULL "
    "AND status <> 'deleted' ORDER BY created_at DESC, id DESC LIMIT $4"
)

TARGET = "(SELECT id FROM samework_targets WHERE n = :n)"
KEY = "('samework-' || :client_id::text || '-' || :k::text)"
# Ids of the checked forms (prefix and 26 Crockford characters: digits here).
EVENT_ID = "('evt_' || lpad(:client_id::text, 4, '0') || lpad(:k::text, 22, '0'))"
# Ids that sort after every seeded one and grow with time, like the service's ULIDs (each
# creation appends at the right of the primary key and of the listing indexes).
NEW_ID = ("('cus_Z' || lpad(((extract(epoch FROM clock_timestamp()) * 1000000)::bigint)::text, 17, '0')"
          " || lpad(:client_id::text, 8, '0'))")
NEW_EMAIL = "('sw.' || :client_id::text || '.' || :k::text || '@example.com')"


def statements(repo):
    found = {}
    for path in glob.glob(os.path.join(repo, ".sqlx", "query-*.json")):
        with open(path) as f:
            query = json.load(f)["query"]
        for name, marker in MARKERS.items():
            if marker in query:
                if name in found:
                    sys.exit("samework.py: two .sqlx statements match %r" % marker)
                found[name] = query
    missing = set(MARKERS) - set(found)
    if missing:
        sys.exit("samework.py: no .sqlx statement for %s" % ", ".join(sorted(missing)))
    return found


def bind(query, values):
    """The query with each $N replaced by values[N] (every parameter must have one)."""
    def one(m):
        n = int(m.group(1))
        if n not in values:
            sys.exit("samework.py: no value for $%d in %s" % (n, query[:60]))
        return values[n]
    text = re.sub(r"\$(\d+)\b", one, query)
    if ";" in text:
        sys.exit("samework.py: a statement with ';' cannot be one pgbench command")
    return text + ";\n"


TENANT = {1: ":org::text", 2: ":mode::text"}


def write_values(event_type, key, reply):
    """$1-$11 of every write statement (idempotency::query_saving! and the event CTE)."""
    v = dict(TENANT)
    v.update({
        3: key, 4: "200", 5: reply, 6: "NULL::text", 7: ":etag::text",
        8: EVENT_ID, 9: "'%s'" % event_type, 10: ":event_body", 11: "NULL::text",
    })
    return v


def update_values(key, reply):
    v = write_values("customer.updated", key, reply)
    v.update({
        12: TARGET, 13: "version", 14: "status", 15: "email", 16: "phone",
        17: "first_name", 18: "last_name", 19: ":policy::jsonb", 20: ":metadata::jsonb",
        21: "version + 1", 22: "now()", 23: "xmin::text::bigint",
    })
    return v


def main():
    out = sys.argv[1]
    repo = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..")
    q = statements(repo)
    head = "\\set n random(1, :targets)\n\\set k random(1, 1000000000000)\n"
    scripts = {
        "get": head + bind(q["find_to_show"], {**TENANT, 3: TARGET}),
        # Without a key: no transaction, one statement (compare-and-set, event, no save).
        "patch": head + bind(q["update"], update_values("NULL::text", ":reply::bytea")),
        # With a key: BEGIN; claim and read; write, event and save; COMMIT.
        "patch_idem": head + "BEGIN;\n"
        + bind(q["claim_and_find"], {**TENANT, 3: KEY, 4: ":fingerprint::bytea",
                                     5: ":retention::float8", 6: ":wait_ms::text", 7: TARGET})
        + bind(q["update"], update_values(KEY, ":reply::bytea"))
        + "COMMIT;\n",
        "create": head + bind(q["insert"], {
            **write_values("customer.created", "NULL::text", ":reply::bytea"),
            10: ":created_body",
            12: NEW_ID, 13: "'consumer'", 14: "'active'", 15: NEW_EMAIL, 16: ":phone::text",
            17: ":first_name::text", 18: ":last_name::text", 19: ":policy::jsonb",
            20: ":metadata::jsonb", 21: "1",
            22: "now()", 23: "now()",
        }),
        "list": head + bind(LIST, {**TENANT, 3: ":binding::text", 4: "50"}),
    }
    os.makedirs(out, exist_ok=True)
    for name, text in scripts.items():
        with open(os.path.join(out, name + ".sql"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
