#!/usr/bin/env python3
"""Helpers for scripts/bench (standard library only).

  util.py free-port
  util.py deep-cursor BASE_URL TOKEN PAGES      -> prints the path of page PAGES+1 (limit 50)
  util.py proc PID                              -> "cpu_ticks vmhwm_kib vmrss_kib"
  util.py ratelimit RESULTS_DIR SCENARIO        -> half of the measured max req/s (integer)
  util.py report RESULTS_DIR OUT_JSON           -> prints the tables, writes OUT_JSON
"""
import json
import os
import socket
import subprocess
import sys
import urllib.request

# The targets of issue 5, checked in the report.
TARGETS = {
    "get": 0.5,          # GET >= 0.5 x ceiling get
    "patch": 0.6,        # PATCH >= 0.6 x ceiling patch
    "patch_idem": 1.0,   # idempotent PATCH >= 1.0 x ceiling patch_idem
    "deep_vs_first": 0.9,
    "scale": 0.9,
    "fixed_p99_ms": 10.0,
    "rss_mib": 100.0,
    "rls_cost": 0.05,    # row-level security costs at most 5 % of throughput
}

SCENARIOS = [
    # name, label, ceiling script it is compared with
    ("get", "GET one customer", "get"),
    ("patch", "PATCH policy limit", "patch"),
    ("patch_idem", "PATCH + Idempotency-Key", "patch_idem"),
    ("create", "create (POST)", None),
    ("list_first", "list first page (50)", None),
    ("list_deep", "list deep page (101st)", None),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def deep_cursor(base, token, pages):
    path = "/v1/customers?limit=50"
    for _ in range(int(pages)):
        req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(req, timeout=30) as resp:
            page = json.load(resp)
        if not page.get("hasMore") or not page.get("nextCursor"):
            sys.exit("deep-cursor: the listing ended before %s pages" % pages)
        path = "/v1/customers?limit=50&cursor=" + page["nextCursor"]
    print(path)


def proc(pid):
    with open("/proc/%s/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)
    hwm = rss = 0
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    print(ticks, hwm, rss)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def wrk_result(d, name):
    """A wrk run (done() JSON plus the CPU ticks bash recorded) as the report's row."""
    r = load(os.path.join(d, name + ".json"))
    if r is None:
        return None
    secs = r["duration_us"] / 1e6
    e = r["errors"]
    errors = e["connect"] + e["read"] + e["write"] + e["status"] + e["timeout"]
    lat = r["latency_us"]
    row = {
        "requests": r["requests"],
        "seconds": round(secs, 3),
        "rps": round(r["requests"] / secs, 1) if secs else 0.0,
        "p50_ms": lat["p50"] / 1000,
        "p90_ms": lat["p90"] / 1000,
        "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p999"] / 1000,
        "max_ms": lat["max"] / 1000,
        "mean_ms": round(lat["mean"] / 1000, 3),
        "errors": errors,
        "error_detail": e,
    }
    cpu = load(os.path.join(d, name + ".cpu.json"))
    if cpu:
        row["server_cpu_s"] = cpu["cpu_s"]
        if r["requests"]:
            row["server_cpu_us_per_request"] = round(cpu["cpu_s"] * 1e6 / r["requests"], 1)
    return row


def ratelimit(d, name):
    row = wrk_result(d, name)
    print(max(1, int(row["rps"] / 2)) if row else 0)


def oha_result(path):
    r = load(path)
    if r is None:
        return None
    s = r.get("summary", {})
    pct = r.get("latencyPercentiles", {})
    codes = r.get("statusCodeDistribution", {}) or {}
    errors = sum(int(v) for k, v in codes.items() if not str(k).startswith("2"))
    # Requests still in flight when the duration ends are not failures (oha -w waits for them).
    errors += sum(int(v) for k, v in (r.get("errorDistribution") or {}).items()
                  if k != "aborted due to deadline")

    def ms(key):
        v = pct.get(key)
        return None if v is None else round(v * 1000, 3)

    return {
        "rps": round(s.get("requestsPerSec") or 0, 1),
        "requests": sum(int(v) for v in codes.values()),
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
        "max_ms": round((s.get("slowest") or 0) * 1000, 3),
        "errors": errors,
        "status_codes": codes,
        "error_distribution": r.get("errorDistribution") or {},
    }


def parse_ceiling(path):
    out = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "ceiling" and parts[2].startswith("tps="):
            out[parts[1]] = {
                "tps": float(parts[2][4:]),
                "latency_ms": float(parts[3].split("=")[1]) if len(parts) > 3 else None,
            }
    return out or None


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return ("%." + str(digits) + "f") % v
    return str(v)


def verdict(value, target):
    if value is None:
        return ""
    return "ok" if value >= target else "BELOW"


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))


def report(d, out_path):
    meta = load(os.path.join(d, "meta.json")) or {}
    res = {"meta": meta, "scenarios": {}, "targets": TARGETS}
    ceiling = parse_ceiling(os.path.join(d, "ceiling.txt")) if not meta.get("skip_ceiling") else None
    res["ceiling"] = ceiling
    if meta.get("ceiling_error"):
        res["ceiling_error"] = meta["ceiling_error"]

    rows = []
    for name, label, ceil_name in SCENARIOS:
        row = wrk_result(d, name)
        if row is None:
            continue
        ratio = None
        if ceil_name and ceiling and ceil_name in ceiling and ceiling[ceil_name]["tps"]:
            ratio = round(row["rps"] / ceiling[ceil_name]["tps"], 3)
            row["ceiling"] = ceil_name
            row["ceiling_tps"] = ceiling[ceil_name]["tps"]
            row["ratio_to_ceiling"] = ratio
        res["scenarios"][name] = row
        target = TARGETS.get(ceil_name) if ceil_name else None
        rows.append([label, fmt(row["rps"], 0), fmt(row["p50_ms"]), fmt(row["p99_ms"]),
                     fmt(row["max_ms"]), row["errors"],
                     fmt(row.get("ceiling_tps"), 0) if ceil_name else "",
                     fmt(ratio) if ceil_name else "",
                     (">= %.1f %s" % (target, verdict(ratio, target))) if target else "",
                     fmt(row.get("server_cpu_us_per_request"), 0)])

    print()
    print("== customers-api load benchmark: %s connections, %s threads, %ss each (wrk) =="
          % (meta.get("connections"), meta.get("threads"), meta.get("seconds_each")))
    print("   %s customers in org_bench/test; machine: %s cores, load avg at start %s"
          % (meta.get("small_n"), meta.get("cores"), meta.get("loadavg_start")))
    table(["scenario", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "ceiling tps",
           "ratio", "target", "srv CPU us/req"], rows)

    sc = res["scenarios"]
    if "list_first" in sc and "list_deep" in sc and sc["list_first"]["rps"]:
        r = round(sc["list_deep"]["rps"] / sc["list_first"]["rps"], 3)
        res["deep_vs_first_ratio"] = r
        print("list deep/first page ratio: %s (target >= %.1f %s)"
              % (fmt(r), TARGETS["deep_vs_first"], verdict(r, TARGETS["deep_vs_first"])))
    if ceiling is None:
        why = meta.get("ceiling_error") or ("skipped (SKIP_CEILING=1)" if meta.get("skip_ceiling") else "no result")
        print("ceiling: %s" % why)
    else:
        print("ceiling (pgbench, same run): " + ", ".join(
            "%s %.0f tps" % (k, v["tps"]) for k, v in ceiling.items()))

    # Fixed-rate runs.
    fixed = {}
    frows = []
    tool = meta.get("fixed_rate_tool")
    for name in ("get", "patch"):
        path = os.path.join(d, "fixed_%s.json" % name)
        if tool == "oha":
            row = oha_result(path)
        else:
            row = wrk_result(d, "fixed_" + name)
        if row is None:
            continue
        row["target_rate"] = (meta.get("fixed_rates") or {}).get(name)
        fixed[name] = row
        ok = "" if row.get("p99_ms") is None else (
            "ok" if row["p99_ms"] <= TARGETS["fixed_p99_ms"] else "ABOVE")
        frows.append([name.upper(), fmt(row["target_rate"]), fmt(row["rps"], 0),
                      fmt(row["p50_ms"]), fmt(row["p99_ms"]), fmt(row["p999_ms"]),
                      fmt(row["max_ms"]), row["errors"],
                      "<= %.0f %s" % (TARGETS["fixed_p99_ms"], ok)])
    if frows:
        res["fixed_rate"] = {"tool": tool, "runs": fixed}
        print()
        print("== fixed rate at half the measured max, %ss each, %s ==" % (
            meta.get("seconds_each"), meta.get("fixed_rate_tool_note", tool)))
        table(["scenario", "rate", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors",
               "p99 target"], frows)

    # Scale.
    srows = []
    scale = {}
    for name, label, _ in SCENARIOS:
        big = wrk_result(d, "scale_" + name)
        if big is None:
            continue
        small = sc.get(name)
        ratio = round(big["rps"] / small["rps"], 3) if small and small["rps"] else None
        big["ratio_large_small"] = ratio
        scale[name] = big
        srows.append([label, fmt(small["rps"], 0) if small else "n/a", fmt(big["rps"], 0),
                      fmt(big["p50_ms"]), fmt(big["p99_ms"]), fmt(big["max_ms"]), big["errors"],
                      fmt(ratio), ">= %.1f %s" % (TARGETS["scale"], verdict(ratio, TARGETS["scale"]))])
    if srows:
        res["scale"] = {"large_n": meta.get("large_n"), "seconds": meta.get("scale_seconds"),
                        "runs": scale}
        print()
        print("== scale: %s vs %s customers, %ss each ==" % (
            meta.get("large_n"), meta.get("small_n"), meta.get("scale_seconds")))
        table(["scenario", "req/s small", "req/s large", "p50 ms", "p99 ms", "max ms", "errors",
               "large/small", "target"], srows)

    # Row-level security cost: runs with the policies on (the main run and a second run right
    # after the policies-off run) against the policies-off run.
    rrows = []
    rls = {}
    for name, label, _ in SCENARIOS[:3]:
        off = wrk_result(d, "rls_off_" + name)
        again = wrk_result(d, "rls_on_" + name)
        on = sc.get(name)
        if off is None or on is None or not off["rps"]:
            continue
        on_rps = [r["rps"] for r in (on, again) if r]
        median_on = sorted(on_rps)[len(on_rps) // 2] if len(on_rps) % 2 else sum(on_rps) / 2
        cost = round(1 - median_on / off["rps"], 3)
        rls[name] = {"rps_on": on_rps, "rps_off": off["rps"], "cost": cost}
        rrows.append([label, " / ".join(fmt(r, 0) for r in on_rps), fmt(off["rps"], 0),
                      "%.1f %%" % (cost * 100),
                      "<= 5 %% %s" % ("ok" if cost <= TARGETS["rls_cost"] else "ABOVE")])
    if rrows:
        res["row_level_security"] = rls
        print()
        print("== row-level security: policies on vs off (same run) ==")
        table(["scenario", "req/s on (main / after)", "req/s off", "cost", "target"], rrows)

    # Resources.
    resources = load(os.path.join(d, "resources.json")) or {}
    res["server"] = resources
    if resources:
        print()
        hwm = resources.get("peak_rss_mib")
        print("server: peak RSS (VmHWM) %s MiB (target <= %.0f %s); CPU %s s over the run (%s s wall)"
              % (fmt(hwm, 1), TARGETS["rss_mib"],
                 "" if hwm is None else ("ok" if hwm <= TARGETS["rss_mib"] else "ABOVE"),
                 fmt(resources.get("cpu_s"), 1), fmt(resources.get("wall_s"), 0)))
        if scale and resources.get("peak_rss_mib_small") is not None:
            print("        peak RSS before the scale phase: %s MiB" % fmt(resources["peak_rss_mib_small"], 1))

    extra = [wrk_result(d, p + name) for p in ("rls_off_", "rls_on_") for name, _, _ in SCENARIOS[:3]]
    all_errors = sum(r["errors"] for r in sc.values()) + sum(r["errors"] for r in fixed.values()) \
        + sum(r["errors"] for r in scale.values()) + sum(r["errors"] for r in extra if r)
    res["total_errors"] = all_errors
    print("errors over all runs: %d%s" % (all_errors, "" if all_errors == 0 else "  <-- must be 0"))

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(res, f, indent=2, sort_keys=True)
        f.write("\n")
    print("results: %s" % out_path)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"free-port": free_port, "deep-cursor": deep_cursor, "proc": proc,
     "ratelimit": ratelimit, "report": report}[cmd](*args)


if __name__ == "__main__":
    main()
