#!/usr/bin/env python3
"""Splits a callgrind profile of the server into components (docs/performance.md#where-a-requests-cpu-goes).

    callgrind_split.py PROFILE [PROFILE ...] [--requests N ...] [--json]

Each function is put in a component by the first pattern of COMPONENTS that its (demangled)
name matches. A function that matches none (malloc, memcpy, core/alloc/std code, generic glue
whose name says nothing) gives its own cost to the components of its callers, in proportion to
the inclusive cost of each call edge into it: so an allocation made while building JSON counts
as JSON, one made by the HTTP codec as HTTP. A function's cost is its own ("self") instructions;
the components of a profile add up to its total. Callgrind's call edges carry no deeper context
than caller -> callee, so the share of an unclassified function that several components call is
an estimate (proportional to the edges' costs), exact for the classified ones.

With --requests (one count per profile), the figures are per request.
"""
import json
import re
import sys
from collections import defaultdict

# (component, regex on the function's name). Order matters: the first match wins, so the more
# specific patterns come first. Names are those of a release build's symbols (legacy mangling,
# demangled by valgrind): crate::module::...::function, generics erased.
COMPONENTS = [
    ("TLS to PostgreSQL (rustls, ring)", r"\brustls::|\bring::|\bring_core_|tokio_rustls::"),
    ("auth (token check)", r"customers_api::auth::|jsonwebtoken::"),
    ("rate limit", r"customers_api::rate_limit|governor::|customers_api::tenant_limit"),
    ("request deadline (db::deadline)", r"customers_api::db::deadline"),
    ("request id", r"customers_api::request_id|customers_api::request_context::request_id_for|\bulid::"),
    ("metrics", r"customers_api::metrics|\bprometheus::"),
    ("log line and spans (tracing)", r"customers_api::request_context::|\btracing_subscriber::|\btracing_core::|\btracing::|customers_api::telemetry"),
    ("validation", r"customers_api::customers::validation|customers_api::customers::input|customers_api::customers::integers|customers_api::customers::domain"),
    ("event building", r"customers_api::customers::events|customers_api::events::"),
    ("idempotency", r"customers_api::idempotency::"),
    ("JSON (serde_json, serde)", r"\bserde_json::|\bserde::|customers_api::customers::json_text|customers_api::json_body|json_patch::"),
    ("pool (sqlx pool, acquire)", r"sqlx_core::pool::|customers_api::db::(acquire|hosts|lost|monitor)|customers_api::db::[a-z_]*acquire"),
    ("sqlx encode/decode, protocol", r"\bsqlx_postgres::|\bsqlx_core::|\bsqlx::"),
    ("handlers, service, repo", r"customers_api::"),
    ("HTTP parsing and routing (actix)", r"\bactix_http::|\bactix_web::|\bactix_router::|\bactix_service::|\bactix_utils::|\bactix_codec::|\bhttparse::|\bhttp::|\bactix_server::|\bregex"),
    ("async runtime and sockets (tokio, mio)", r"\btokio::|\bmio::|\bactix_rt::|\btokio_util::"),
    ("hashing, time, formatting (std)", r"\bcore::fmt::|alloc::fmt::|\bchrono::|\bstd::time::|\bcore::hash::|hashbrown::|\bsha2::|\bhmac::"),
]
COMPILED = [(name, re.compile(p)) for name, p in COMPONENTS]
UNCLASSIFIED_ROOT = "other (thread roots, unattributed)"


def parse(path):
    """(self cost per function, inclusive cost per (caller, callee) edge) of the Ir events."""
    names = {"fn": {}, "cfn": {}}
    self_cost = defaultdict(int)
    edges = defaultdict(int)
    fn = None
    pending_call = None  # callee of the 'calls=' line just read; the next cost line is its cost

    def name_of(kind, value):
        # Compressed names: "(id) name" the first time, "(id)" afterwards; fn and cfn share ids.
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            names["fn"][m.group(1)] = m.group(2)
        return names["fn"].get(m.group(1), value)

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call is not None:
                    edges[(fn, pending_call)] += cost
                    pending_call = None
                else:
                    self_cost[fn] += cost
            elif line.startswith("fn="):
                fn = name_of("fn", line[3:])
            elif line.startswith("cfn="):
                callee = name_of("cfn", line[4:])
            elif line.startswith("calls="):
                pending_call = callee
    return self_cost, edges


def classify(name):
    for comp, rx in COMPILED:
        if rx.search(name):
            return comp
    return None


def split(path):
    self_cost, edges = parse(path)
    functions = set(self_cost) | {f for e in edges for f in e}
    comp = {f: classify(f or "") for f in functions}
    callers = defaultdict(list)  # callee -> [(caller, inclusive cost of the edge)]
    for (f, g), c in edges.items():
        if f != g and c > 0:
            callers[g].append((f, c))
    # owner[f]: how f's own cost divides over components. Classified functions own theirs; an
    # unclassified one takes its callers' owners, weighted by the edges' inclusive costs.
    owner = {}
    visiting = set()

    def owner_of(f):
        if f in owner:
            return owner[f]
        if comp[f] is not None:
            owner[f] = {comp[f]: 1.0}
            return owner[f]
        ins = callers.get(f, [])
        if not ins or f in visiting:
            return {UNCLASSIFIED_ROOT: 1.0}
        visiting.add(f)
        total = sum(c for _, c in ins)
        dist = defaultdict(float)
        for caller, c in ins:
            for k, v in owner_of(caller).items():
                dist[k] += v * c / total
        visiting.discard(f)
        owner[f] = dict(dist)
        return owner[f]

    sys.setrecursionlimit(100000)
    result = defaultdict(float)
    for f, c in self_cost.items():
        if c:
            for k, v in owner_of(f).items():
                result[k] += c * v
    return result, sum(self_cost.values())


def main(argv):
    args = [a for a in argv if a != "--json"]
    as_json = "--json" in argv
    requests = []
    if "--requests" in args:
        i = args.index("--requests")
        requests = [float(x) for x in args[i + 1:]]
        args = args[:i]
    order = [name for name, _ in COMPONENTS] + [UNCLASSIFIED_ROOT]
    columns = []
    for n, path in enumerate(args):
        res, total = split(path)
        per = requests[n] if n < len(requests) else 1.0
        columns.append(({k: v / per for k, v in res.items()}, total / per))
    if as_json:
        print(json.dumps([{"profile": p, "total": t, "components": {k: round(v) for k, v in r.items()}}
                          for p, (r, t) in zip(args, columns)], indent=1))
        return
    unit = "k instr/req" if requests else "k instr"
    print(f"{'component':42s}" + "".join(f"{a.split('/')[-1][:14]:>16s}" for a in args))
    for k in order:
        if any(r.get(k, 0) for r, _ in columns):
            print(f"{k:42s}" + "".join(f"{r.get(k, 0) / 1000:12.1f} {100 * r.get(k, 0) / (t or 1):2.0f}%" for r, t in columns))
    print(f"{'total (' + unit + ')':42s}" + "".join(f"{t / 1000:16.1f}" for _, t in columns))


if __name__ == "__main__":
    main(sys.argv[1:])
