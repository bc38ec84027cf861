#!/usr/bin/env bash
# Audit events shipped per second to the HEC simulator, side by side in one run:
#   - ours: SinkDriver + SplunkHecSink (adapters/examples/audit_ship.rs) with indexer
#     acknowledgement ON — an event counts only after its ackId reported true — gzip on
#     (the shipped default) and off;
#   - peer: syslog-ng's http() destination posting the very same HEC envelopes (written by our
#     encoder, one per line) from a file source to the same simulator, batching comparably
#     (batch-bytes 1,000,000, batch-lines 2000). syslog-ng has no HEC indexer acknowledgement:
#     it counts an event as sent on HTTP 200.
# Every run starts from a reset simulator and ends when the simulator has indexed every event
# (ours: when every ack came back); the simulator's distinct-uid count is checked afterwards.
#
#   ops/bench/audit-ship.sh [EVENTS] [ROUNDS]     # default 1,000,000 events, 3 rounds
#
# Output: a table on stdout and ops/bench/out/audit-ship/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../.."

EVENTS=${1:-1000000}
ROUNDS=${2:-3}
OUT=ops/bench/out/audit-ship
PORT=${HEC_PORT:-18088}
TOKEN=11111111-2222-3333-4444-555555555555
CHANNEL=0f5d6e1c-5b7a-4d1e-9a55-1b2c3d4e5f60
mkdir -p "$OUT"
OUT_ABS=$(cd "$OUT" && pwd)
: > "$OUT/results.jsonl"

if ! command -v syslog-ng >/dev/null || [ ! -e /usr/lib/syslog-ng/3.38/libhttp.so ] && ! ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; then
  echo "== installing syslog-ng-core and syslog-ng-mod-http"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends syslog-ng-core syslog-ng-mod-http >/dev/null
fi

echo "== building (release)"
cargo build --release -q -p fixtures --bin hec-sim
cargo build --release -q -p adapters --example audit_ship
TARGET=${CARGO_TARGET_DIR:-target}
SIM=$TARGET/release/hec-sim
SHIP=$TARGET/release/examples/audit_ship

SIM_PID=""; SNG_PID=""
cleanup() {
  [ -n "$SNG_PID" ] && kill "$SNG_PID" 2>/dev/null || true
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true
}
trap cleanup EXIT

"$SIM" --listen "127.0.0.1:$PORT" --token "$TOKEN" > "$OUT/hec-sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/_sim/stats" >/dev/null 2>&1 && break; sleep 0.1; done

stat() { curl -fsS "http://127.0.0.1:$PORT/_sim/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
reset() { curl -fsS -X POST "http://127.0.0.1:$PORT/_sim/reset" >/dev/null; }
now() { date +%s.%N; }

echo "== writing $EVENTS envelopes for the peer"
"$SHIP" envelopes --events "$EVENTS" --out "$OUT_ABS/envelopes.ndjson"
ls -l "$OUT/envelopes.ndjson" | awk '{printf "   %s bytes, %.0f bytes per envelope\n", $5, $5/'"$EVENTS"'}'

run_ours() { # $1 = label, rest = extra args
  local label=$1; shift
  reset
  local t0 t1 line
  t0=$(now)
  line=$("$SHIP" ship --endpoint "http://127.0.0.1:$PORT" --token "$TOKEN" --channel "$CHANNEL" --events "$EVENTS" "$@")
  t1=$(now)
  record "$label" "$t0" "$t1" "$line"
}

run_syslog_ng() {
  reset
  local conf="$OUT_ABS/syslog-ng.conf"
  rm -f "$OUT_ABS/syslog-ng.persist" "$OUT_ABS/syslog-ng.ctl" "$OUT_ABS/syslog-ng.pid"
  cat > "$conf" <<EOF
@version: 3.38
options { threaded(yes); use-dns(no); use-fqdn(no); keep-hostname(yes); stats-freq(0); log-fifo-size(200000); };
source s_events {
  file("$OUT_ABS/envelopes.ndjson" flags(no-parse) log-iw-size(200000) log-fetch-limit(2000) follow-freq(1) persist-name("bench-events"));
};
destination d_hec {
  http(
    url("http://127.0.0.1:$PORT/services/collector/event")
    method("POST")
    user-agent("syslog-ng-bench")
    headers("Authorization: Splunk $TOKEN", "X-Splunk-Request-Channel: $CHANNEL", "Content-Type: application/json")
    body("\${MESSAGE}")
    delimiter("\n")
    batch-lines(2000)
    batch-bytes(1000000)
    batch-timeout(100)
    workers(${SNG_WORKERS:-4})
    persist-name("bench-hec")
  );
};
log { source(s_events); destination(d_hec); flags(flow-control); };
EOF
  local t0 t1
  t0=$(now)
  syslog-ng -F -f "$conf" --persist-file "$OUT_ABS/syslog-ng.persist" --pidfile "$OUT_ABS/syslog-ng.pid" \
    --control "$OUT_ABS/syslog-ng.ctl" --no-caps > "$OUT/syslog-ng.log" 2>&1 &
  SNG_PID=$!
  local deadline=$(( $(date +%s) + 600 ))
  while [ "$(stat events_indexed)" -lt "$EVENTS" ]; do
    if ! kill -0 "$SNG_PID" 2>/dev/null; then echo "syslog-ng exited:"; cat "$OUT/syslog-ng.log"; exit 1; fi
    [ "$(date +%s)" -lt "$deadline" ] || { echo "syslog-ng did not finish in 600 s"; break; }
    sleep 0.05
  done
  t1=$(now)
  kill "$SNG_PID" 2>/dev/null || true; wait "$SNG_PID" 2>/dev/null || true; SNG_PID=""
  record "syslog-ng http() workers(${SNG_WORKERS:-4}), acks ignored" "$t0" "$t1" "{}"
}

record() { # label t0 t1 json-from-shipper
  local unique indexed dups
  unique=$(stat unique_events); indexed=$(stat events_indexed); dups=$(stat duplicates)
  python3 - "$1" "$2" "$3" "$4" "$EVENTS" "$unique" "$indexed" "$dups" >> "$OUT/results.jsonl" <<'PY'
import json, sys
label, t0, t1, inner, events, unique, indexed, dups = sys.argv[1:]
secs = float(t1) - float(t0)
print(json.dumps({"run": label, "events": int(events), "seconds": round(secs, 3),
                  "events_per_sec": round(int(events) / secs), "sim_unique": int(unique),
                  "sim_indexed": int(indexed), "sim_duplicates": int(dups),
                  "shipper": json.loads(inner)}))
PY
  tail -1 "$OUT/results.jsonl" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("   %-55s %9s events/s  (%s s; simulator: %s distinct, %s duplicates)" % (
    r["run"], format(r["events_per_sec"], ","), r["seconds"], format(r["sim_unique"], ","),
    r["sim_duplicates"]))'
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS ($EVENTS events each)"
  run_ours "ours: SinkDriver+SplunkHecSink, acks on, gzip"
  run_ours "ours: SinkDriver+SplunkHecSink, acks on, no gzip" --no-gzip
  run_syslog_ng
done

echo "== medians"
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["run"], []).append(r)
for name, rs in runs.items():
    rates = [r["events_per_sec"] for r in rs]
    complete = all(r["sim_unique"] == r["events"] for r in rs)
    print(f"   {name:<55} median {statistics.median(rates):>9,.0f} events/s  runs {rates}  all delivered: {complete}")
PY
