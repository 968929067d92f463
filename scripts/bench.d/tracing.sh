# The cost of tracing (TRACING=1): sourced by scripts/bench, whose helpers it uses.
#
#   tracing  A the service with OpenTelemetry export off (no OTEL_EXPORTER_OTLP_ENDPOINT: the
#            default, where the spans that exist only for traces are never created), B the same
#            binary exporting every trace over OTLP/HTTP (protobuf, batched) to a receiver on
#            127.0.0.1 that answers 200 and keeps nothing (scripts/bench.d/otlp_sink.py); GET
#            and PATCH on the main database; no target, the ratios are the result. What the
#            receiver got (posts and bytes) goes to tracing-sink.json in the work directory and
#            the log, so a B that exported nothing cannot pass for a cheap one.
# The figures and how to read them: docs/performance.md#the-cost-of-tracing.

tracing_sink_pid=
stop_tracing_sink() {
  [[ -n $tracing_sink_pid ]] || return 0
  kill -TERM "$tracing_sink_pid" 2>/dev/null || true
  wait "$tracing_sink_pid" 2>/dev/null || true
  tracing_sink_pid=
}

compare_tracing() {
  local port_file=$work/tracing-sink.port stats=$work/tracing-sink.json _
  stop_server
  python3 "$helpers/otlp_sink.py" "$port_file" "$stats" &
  tracing_sink_pid=$!
  for _ in $(seq 1 50); do [[ -s $port_file ]] && break; sleep 0.1; done
  [[ -s $port_file ]] || die "the OTLP receiver did not start"
  local endpoint=http://127.0.0.1:$(cat "$port_file")
  define_variant tracing_off "export off" main "" ""
  define_variant tracing_on "OTLP export on" main "OTEL_EXPORTER_OTLP_ENDPOINT=$endpoint" ""
  ab_compare tracing "OpenTelemetry export on vs off" "" "get patch" tracing_off tracing_on
  stop_server   # flushes B's last batch, if B ran last
  stop_tracing_sink
  log "tracing: the receiver at $endpoint got $(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%d posts, %d bytes" % (s["posts"], s["bytes"]))' "$stats")"
}
