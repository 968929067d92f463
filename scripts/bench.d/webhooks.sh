# Webhook fan-out (docs/webhooks.md, docs/performance.md "Webhook fan-out"), sourced by
# scripts/bench when WEBHOOKS=1 (it uses the functions and state of scripts/bench):
#
#   WEBHOOKS=1 SKIP_MAIN=1 SKIP_CEILING=1 SKIP_AB=1 SKIP_FRESH=1 scripts/bench   # only this
#
# Receivers: WEBHOOK_RECEIVERS (2) processes of scripts/bench.d/webhook_receiver.py on 127.0.0.1,
# answering 200 at once; the 20 endpoints are 20 paths spread over them (their CPU time is in
# the results, to show they are not the bottleneck). Every server of this
# phase runs with webhooks.allow_http and webhooks.allow_private_networks (loopback receivers).
#
#  webhooks  A/B: PATCH and create with the tenant's 20 endpoints disabled (A: "0 endpoints";
#            the dispatcher still reads every event) vs enabled (B), on one database and one
#            server; before each A run the backlog B left is ended (failed), so each B run starts
#            with none and carries what its own writes make; before each B run the tables are
#            analysed (standing in for autovacuum). Target B/A >= 0.9.
#  fan-out   a fresh copy, 20 endpoints, WEBHOOK_EVENTS (10,000) PATCHes of distinct customers
#            written by WEBHOOK_WRITERS threads at WEBHOOK_RATE/s (0: as fast as they go); then
#            waits (up to WEBHOOK_DRAIN_SECONDS, 900) until events x 20 deliveries succeeded.
#            Prints deliveries/s (first delivery made to last succeeded) and commit-to-first-
#            attempt p50/p99/max (webhook_attempts.at of attempt 1 minus the event's
#            recorded_at, the same clocks as the webhook_commit_to_first_attempt_seconds metric).
#            WEBHOOK_ANALYZE_AFTER (5) seconds into the writes the tables are analysed (standing
#            in for autovacuum, off on the bench machine's PostgreSQL); 0: never.
#  memory    a fresh copy, 20 endpoints pointing at a closed port on 127.0.0.1, 1,000 PATCHes
#            (real events), then WEBHOOK_BACKLOG (1,000,000) pending deliveries seeded in SQL
#            over those events; the server (re)started on it works the backlog (every attempt
#            refused, retried on the schedule) for WEBHOOK_RSS_SECONDS (180) while VmRSS is
#            sampled every 5 s.
# WEBHOOK_SERVER_ENV: more server environment for every server of the phase (words NAME=VALUE),
# e.g. "CUSTOMERS_API__WEBHOOKS__MAX_IN_FLIGHT=512".
# WEBHOOK_BIN: the server binary of every server of the phase (default: the one just built),
# e.g. another branch's release build, for a before/after on the same machine.
# WEBHOOK_RECEIVERS_NICE (0): the receivers run at this nice value. They stand in for
# partners' machines, which do not share our CPU; 19 keeps them from taking the cores the
# writes need in the A/B (the server's own yielding is measured either way).
# Results: printed, and written to webhooks.json beside $RESULTS.

wh_receivers=${WEBHOOK_RECEIVERS:-2}
wh_endpoints=${WEBHOOK_ENDPOINTS:-20}
wh_events=${WEBHOOK_EVENTS:-10000}
wh_rate=${WEBHOOK_RATE:-0}
wh_writers=${WEBHOOK_WRITERS:-8}
wh_backlog=${WEBHOOK_BACKLOG:-1000000}
wh_env="CUSTOMERS_API__WEBHOOKS__ALLOW_HTTP=true CUSTOMERS_API__WEBHOOKS__ALLOW_PRIVATE_NETWORKS=true${WEBHOOK_SERVER_ENV:+ $WEBHOOK_SERVER_ENV}"
wh_bin=${WEBHOOK_BIN:-$bin}
[[ -x $wh_bin ]] || die "no executable $wh_bin"
wh_pids=()
wh_urls=()

wh() { python3 "$helpers/webhooks.py" "$@"; }

wh_stop_receivers() {
  local pid
  for pid in "${wh_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  wh_pids=()
}

# The EXIT trap while receivers run: they stop, then scripts/bench's cleanup (with the status).
wh_cleanup() {
  local rc=$?
  set +e
  wh_stop_receivers
  (exit "$rc")
  cleanup
}

wh_start_receivers() {
  local i addr
  for ((i = 0; i < wh_receivers; i++)); do
    nice -n "${WEBHOOK_RECEIVERS_NICE:-0}" python3 "$helpers/webhook_receiver.py" >"$work/receiver-$i.out" 2>&1 &
    wh_pids+=($!)
  done
  for ((i = 0; i < wh_receivers; i++)); do
    for _ in $(seq 1 50); do [[ -s $work/receiver-$i.out ]] && break; sleep 0.1; done
  done
  for ((i = 0; i < wh_endpoints; i++)); do
    addr=$(head -1 "$work/receiver-$((i % wh_receivers)).out")
    [[ -n $addr ]] || die "receiver $((i % wh_receivers)) did not start"
    wh_urls+=("http://$addr/hook/$i")
  done
}

# CPU ticks of the receivers so far.
wh_receivers_ticks() {
  local pid total=0
  for pid in "${wh_pids[@]}"; do total=$((total + $(util proc "$pid" | cut -d' ' -f1))); done
  echo "$total"
}

# The delivery state of DB as JSON.
wh_state() {
  sql_value "$db_prefix$1" "SELECT json_build_object(
      'events', (SELECT count(*) FROM customer_events),
      'deliveries', (SELECT count(*) FROM webhook_deliveries),
      'succeeded', (SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'),
      'pending', (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'),
      'failed', (SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'),
      'attempts', (SELECT count(*) FROM webhook_attempts))"
}

# A/B: 0 vs 20 endpoints on one database.
wh_compare() {
  analysed_copy webhooks
  use_server webhooks "$wh_env" "$wh_bin" hooks_0
  wh create "$base" "$wh_token" "${wh_urls[@]}" >"$work/webhooks-ab-ids.txt"
  # One transaction, the tables locked first, in the order the server writes them (deliveries,
  # then webhooks): it records and claims meanwhile.
  local off="BEGIN; LOCK TABLE webhook_deliveries, webhooks IN EXCLUSIVE MODE;
             UPDATE webhooks SET enabled = false, disabled_reason = 'manual';
             UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL
              WHERE status = 'pending'; COMMIT;"
  # B's tables analysed as autovacuum would have them (the bench's PostgreSQL runs without it):
  # statistics of empty tables give plans that walk a tenant's entries (docs/performance.md).
  local on="UPDATE webhooks SET enabled = true, disabled_reason = NULL, failing_since = NULL;
            ANALYZE webhook_deliveries, webhook_attempts, webhooks, webhook_secrets, customer_events;"
  define_variant hooks_0 "0 endpoints" webhooks "$wh_env" "$off" "$wh_bin"
  define_variant hooks_20 "$wh_endpoints endpoints" webhooks "$wh_env" "$on" "$wh_bin"
  ab_compare webhooks "$wh_endpoints webhook endpoints vs none" 0.9 "patch create" hooks_0 hooks_20
  wh_state webhooks >"$work/webhooks-ab-state.json"
  stop_server
}

# The fan-out run.
wh_fanout() {
  analysed_copy fanout
  use_server fanout "$wh_env" "$wh_bin" fanout
  wh create "$base" "$wh_token" "${wh_urls[@]}" >"$work/webhooks-fanout-ids.txt"
  psql -qXAt "$(db_url "$db_prefix"fanout)" -c "SELECT id FROM customers
      WHERE org_id = 'org_bench' AND mode = 'test' AND status <> 'deleted'
      ORDER BY random() LIMIT $wh_events" >"$work/webhooks-ids.txt"
  local expected=$((wh_events * wh_endpoints)) t0 cpu0 rcpu0 last=-1 progress now state succeeded
  cpu0=$(proc | cut -d' ' -f1)
  rcpu0=$(wh_receivers_ticks)
  t0=$(date +%s.%N)
  log "fan-out: $wh_events PATCHes (rate ${wh_rate:-0}/s, 0 = unpaced; $wh_writers writers) with $wh_endpoints endpoints"
  # Statistics as autovacuum would take them once deliveries exist (this machine's PostgreSQL
  # runs with autovacuum = off): WEBHOOK_ANALYZE_AFTER (5) seconds into the writes, ANALYZE of
  # the tables the senders read, which also replans the statements the server has cached (the
  # foreign-key check of webhook_attempts among them). Without it the plans made on empty
  # tables walk a tenant's whole index per delivery (docs/performance.md). 0: no ANALYZE.
  local analyze_pid=
  if [[ ${WEBHOOK_ANALYZE_AFTER:-5} != 0 ]]; then
    (sleep "${WEBHOOK_ANALYZE_AFTER:-5}"
     sql "$db_prefix"fanout -c "ANALYZE webhook_deliveries, webhook_attempts, customer_events, webhooks, webhook_secrets") &
    analyze_pid=$!
  fi
  wh write "$base" "$token" "$work/webhooks-ids.txt" "$wh_rate" "$wh_writers" >"$work/webhooks-write.json"
  [[ -z $analyze_pid ]] || wait "$analyze_pid" || true
  log "fan-out: written $(cat "$work/webhooks-write.json") ; waiting for $expected deliveries"
  progress=$(date +%s.%N)
  while :; do
    succeeded=$(sql_value "$db_prefix"fanout "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
    [[ $succeeded -ge $expected ]] && break
    [[ $succeeded == "$last" ]] || { last=$succeeded; progress=$(date +%s.%N); }
    older_than "$progress" 30 && { log "fan-out: no progress for 30 s at $succeeded"; break; }
    older_than "$t0" "${WEBHOOK_DRAIN_SECONDS:-900}" && { log "fan-out: drain timed out at $succeeded"; break; }
    sleep 0.5
  done
  now=$(date +%s.%N)
  echo "{\"cpu_s\": $(calc "($(proc | cut -d' ' -f1) - $cpu0) / $clk_tck"), \"receivers_cpu_s\": $(calc "($(wh_receivers_ticks) - $rcpu0) / $clk_tck"), \"wall_s\": $(calc "$now - $t0"), \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" \
    >"$work/webhooks-fanout-cpu.json"
  curl -s "$base/metrics" | grep '^webhook_' >"$work/webhooks-fanout-metrics.txt" || true
  state=$(wh_state fanout)
  sql_value "$db_prefix"fanout "SELECT json_build_object(
      'deliveries_per_s', round((count(*) / extract(epoch FROM max(a.at) - min(d.created_at)))::numeric, 1),
      'first_attempt_p50_s', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM f.at - d.event_recorded_at))::numeric, 3),
      'first_attempt_p99_s', round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM f.at - d.event_recorded_at))::numeric, 3),
      'first_attempt_max_s', round(max(extract(epoch FROM f.at - d.event_recorded_at))::numeric, 3),
      'attempts_per_delivery', round(avg(d.attempts)::numeric, 3),
      'drain_window_s', round(extract(epoch FROM max(a.at) - min(d.created_at))::numeric, 2),
      'write_window_s', (SELECT round(extract(epoch FROM max(recorded_at) - min(recorded_at))::numeric, 2) FROM customer_events))
    FROM webhook_deliveries d
    JOIN webhook_attempts f ON f.org_id = d.org_id AND f.mode = d.mode AND f.delivery_id = d.id AND f.n = 1
    JOIN webhook_attempts a ON a.org_id = d.org_id AND a.mode = d.mode AND a.delivery_id = d.id AND a.n = d.attempts
   WHERE d.status = 'succeeded'" >"$work/webhooks-fanout.json"
  python3 - "$work" "$state" <<'EOF' >"$work/webhooks-fanout-all.json"
import json, sys
w = sys.argv[1]
out = json.load(open(w + "/webhooks-fanout.json"))
out["state"] = json.loads(sys.argv[2])
out["write"] = json.load(open(w + "/webhooks-write.json"))
out["server"] = json.load(open(w + "/webhooks-fanout-cpu.json"))
print(json.dumps(out))
EOF
  log "fan-out: $(cat "$work/webhooks-fanout-all.json")"
  stop_server
}

# Bounded memory under a backlog of WEBHOOK_BACKLOG pending deliveries.
wh_memory() {
  analysed_copy backlog
  local closed
  closed=$(util free-port) # nothing listens there: every attempt is refused at once
  use_server backlog "$wh_env" "$wh_bin" backlog
  local urls=() i
  for ((i = 0; i < wh_endpoints; i++)); do urls+=("http://127.0.0.1:$closed/hook/$i"); done
  wh create "$base" "$wh_token" "${urls[@]}" >/dev/null
  psql -qXAt "$(db_url "$db_prefix"backlog)" -c "SELECT id FROM customers
      WHERE org_id = 'org_bench' AND mode = 'test' AND status <> 'deleted' LIMIT 1000" >"$work/webhooks-backlog-ids.txt"
  wh write "$base" "$token" "$work/webhooks-backlog-ids.txt" 0 4 >/dev/null
  stop_server
  log "memory: seeding $wh_backlog pending deliveries"
  # Copies of the deliveries the writes made, due now, with fresh ids (hex digits are in the
  # ULID alphabet).
  sql "$db_prefix"backlog -c "WITH src AS (SELECT row_number() OVER () - 1 AS k, d.* FROM webhook_deliveries d),
             n AS (SELECT count(*) AS c FROM src)
      INSERT INTO webhook_deliveries (org_id, mode, id, webhook_id, event_id, event_type,
        customer_id, event_version, next_attempt_at, event_recorded_at)
      SELECT s.org_id, s.mode, 'dlv_' || upper(lpad(to_hex(g.n), 26, '0')), s.webhook_id, s.event_id,
             s.event_type, s.customer_id, s.event_version, now(), s.event_recorded_at
        FROM generate_series(1, $wh_backlog) AS g(n) JOIN src s ON s.k = g.n % (SELECT c FROM n)"
  sql "$db_prefix"backlog -c "VACUUM ANALYZE webhook_deliveries"
  wh_state backlog >"$work/webhooks-backlog-before.json"
  use_server backlog "$wh_env" "$wh_bin" backlog_run
  local secs=${WEBHOOK_RSS_SECONDS:-180} t0 rss
  t0=$(date +%s)
  : >"$work/webhooks-rss.txt"
  while (($(date +%s) - t0 < secs)); do
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$server_pid/status")
    echo "$(($(date +%s) - t0)) $rss" >>"$work/webhooks-rss.txt"
    sleep 5
  done
  wh_state backlog >"$work/webhooks-backlog-after.json"
  python3 - "$work" <<'EOF' >"$work/webhooks-memory.json"
import json, sys
w = sys.argv[1]
samples = [tuple(map(int, l.split())) for l in open(w + "/webhooks-rss.txt") if l.strip()]
rss = [kib / 1024 for _, kib in samples]
third = max(1, len(rss) // 3)
print(json.dumps({
    "samples": len(rss), "seconds": samples[-1][0] if samples else 0,
    "rss_mib_first": round(rss[0], 1), "rss_mib_last": round(rss[-1], 1),
    "rss_mib_max": round(max(rss), 1),
    "rss_mib_mean_first_third": round(sum(rss[:third]) / third, 1),
    "rss_mib_mean_last_third": round(sum(rss[-third:]) / third, 1),
    "before": json.load(open(w + "/webhooks-backlog-before.json")),
    "after": json.load(open(w + "/webhooks-backlog-after.json")),
    "rss_mib_series": [round(r, 1) for r in rss],
}))
EOF
  log "memory: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("rss_mib_series"); print(json.dumps(d))' "$work/webhooks-memory.json")"
  stop_server
}

webhooks_phase() {
  stop_server
  wh_token=$(env $wh_env "$wh_bin" token --org org_bench --scope webhooks:manage --ttl 24h)
  wh_start_receivers
  trap wh_cleanup EXIT
  [[ ${WEBHOOK_SKIP_AB:-0} == 1 ]] || wh_compare
  [[ ${WEBHOOK_SKIP_FANOUT:-0} == 1 ]] || wh_fanout
  [[ ${WEBHOOK_SKIP_MEMORY:-0} == 1 ]] || wh_memory
  wh_stop_receivers
  python3 - "$work" >"$(dirname "$results")/webhooks.json" <<'EOF'
import json, os, sys
w = sys.argv[1]
def load(name):
    p = os.path.join(w, name)
    return json.load(open(p)) if os.path.exists(p) else None
print(json.dumps({"fanout": load("webhooks-fanout-all.json"), "memory": load("webhooks-memory.json"),
                  "ab_state": load("webhooks-ab-state.json")}, indent=1))
EOF
  log "webhooks: results in $(dirname "$results")/webhooks.json"
}
