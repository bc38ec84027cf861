#!/usr/bin/env bash
# Durable-accept benchmark for POST /incidents (issue 2), everything in one run:
#   1. this disk's raw fsync rate;
#   2. the baseline: the same gateway with group commit off (journal.max_batch = 1), i.e. one
#      SQLite transaction + fsync per request;
#   3. nmpp-gateway as shipped (group commit), delivery paused (pure durable ingest);
#   4. nmpp-gateway as shipped with delivery to the Athena simulator running;
#   5. latency at a fixed 2,000 requests/s (delivery running);
#   plus RSS idle and under load. The load generator is wrk with ops/bench/post_incident.lua (a
#   ~5 KB SDM document, unique submissionId per request) on the same machine.
# Usage: ops/bench/ingest.sh [SECONDS=20] [CONNECTIONS=64]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
CONNS=${2:-64}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release -q -p gateway --bin nmpp-gateway -p fixtures --bin athena-sim
BIN=$PWD/target/release/nmpp-gateway
SIM=$PWD/target/release/athena-sim
mkdir -p target/bench
WORK=$(mktemp -d -p "$PWD/target/bench" ingest.XXXX)
SECRET=bench-secret-0123456789abcdef
HASH=$("$BIN" hash-secret "$SECRET")
export API_KEY=bench API_SECRET=$SECRET BODY=$PWD/ops/bench/incident-5kb.json
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_gateway() { # name port max_batch paused
  local name=$1 port=$2 batch=$3 paused=$4
  cat > "$WORK/$name.toml" <<TOML
[http]
listen = "127.0.0.1:$port"
[journal]
url = "sqlite://$WORK/$name.db"
max_batch = $batch
[delivery]
paused = $paused
[forces.bench]
name = "Bench Constabulary"
ihub_force_id = 42
records = { type = "athena", base_url = "http://127.0.0.1:18099" }
[auth.clients.bench]
secret_sha256 = "$HASH"
roles = ["ihub", "operator"]
[log]
level = "warn"
TOML
  "$BIN" serve --config "$WORK/$name.toml" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  PIDS+=($!)
  GW_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && return 0; sleep 0.1; done
  echo "gateway $name did not start" >&2; cat "$WORK/$name.err" >&2; exit 1
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
run_wrk() { # port [rate]
  local port=$1 rate=${2:-}
  if [ -n "$rate" ]; then
    # wrk paces each connection with delay(); enough connections keep the achieved rate close
    # to the target even when a response is slow.
    RATE=$rate CONNECTIONS=100 wrk -t2 -c100 -d"${SECS}s" --latency -s ops/bench/post_incident.lua "http://127.0.0.1:$port" | grep '^RESULT'
  else
    wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s ops/bench/post_incident.lua "http://127.0.0.1:$port" | grep '^RESULT'
  fi
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

# The Athena simulator runs in its own process so the gateway's memory figures are its own.
"$SIM" --listen 127.0.0.1:18099 > "$WORK/sim.out" 2>&1 &
PIDS+=($!)

echo "# $(date -u +%FT%TZ) $(nproc) cores; ${SECS}s per run; $CONNS connections; body $(wc -c < "$BODY") bytes"
FSYNC=$(python3 ops/bench/fsync_rate.py "$WORK" 5)
echo "fsync:     $FSYNC"

start_gateway baseline 18081 1 true
BASE=$(run_wrk 18081); stop "$GW_PID"
echo "baseline:  $BASE"

start_gateway ingest 18082 4096 true
IDLE=$(rss_kb "$GW_PID")
OURS=$(run_wrk 18082); HWM=$(hwm_kb "$GW_PID"); stop "$GW_PID"
echo "ours:      $OURS rss_idle_kb=$IDLE rss_peak_kb=$HWM"

start_gateway full 18083 4096 false
FULL=$(run_wrk 18083); FULL_HWM=$(hwm_kb "$GW_PID"); stop "$GW_PID"
echo "ours+dlv:  $FULL rss_peak_kb=$FULL_HWM"

start_gateway rate_ingest 18084 4096 true
RATE2K_I=$(run_wrk 18084 2000); stop "$GW_PID"
echo "2000/s:    $RATE2K_I (delivery paused)"

start_gateway rate_full 18085 4096 false
RATE2K=$(run_wrk 18085 2000); RATE_HWM=$(hwm_kb "$GW_PID"); stop "$GW_PID"
echo "2000/s:    $RATE2K rss_peak_kb=$RATE_HWM (delivery running)"

b=$(echo "$BASE" | field rps); o=$(echo "$OURS" | field rps); f=$(echo "$FSYNC" | field rate)
echo "ratio ours/baseline = $(python3 -c "print(f'{$o/$b:.1f}')")x; ours/fsync-rate = $(python3 -c "print(f'{$o/$f:.1f}')")x"
