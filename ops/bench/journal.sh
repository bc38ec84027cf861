#!/usr/bin/env bash
# Durable accepts/s through the gateway: SQLite beside PostgreSQL, in one run (issue 3).
#   1. SQLite journal (as shipped), delivery paused;
#   2. PostgreSQL journal (fresh database), delivery paused, one gateway node;
#   3. PostgreSQL journal, two gateway nodes on the same database (wrk split across them);
#   then `nmpp-gateway audit verify` on the PostgreSQL journal (the chain stays whole with two
#   writers) and the row counts. Load: wrk + ops/bench/post_incident.lua (5.3 KB SDM document,
#   unique submissionId per request) on the same machine.
# Usage: ops/bench/journal.sh [SECONDS=20] [CONNECTIONS=64]
#   PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) creates and drops the
#   benchmark database.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
CONNS=${2:-64}
ADMIN=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release -q -p gateway --bin nmpp-gateway
BIN=$PWD/target/release/nmpp-gateway
mkdir -p target/bench
WORK=$(mktemp -d -p "$PWD/target/bench" journal.XXXX)
SECRET=bench-secret-0123456789abcdef
HASH=$("$BIN" hash-secret "$SECRET")
export API_KEY=bench API_SECRET=$SECRET BODY=$PWD/ops/bench/incident-5kb.json
DB=nmpp_bench_$$
PG_URL="${ADMIN%/*}/$DB"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql -q "$ADMIN" -c "CREATE DATABASE $DB" >/dev/null

start_gateway() { # name port url
  local name=$1 port=$2 url=$3
  cat > "$WORK/$name.toml" <<TOML
[http]
listen = "127.0.0.1:$port"
[journal]
url = "$url"
[delivery]
paused = true
[forces.bench]
name = "Bench Constabulary"
ihub_force_id = 42
records = { type = "athena", base_url = "http://127.0.0.1:18099" }
[auth.clients.bench]
secret_sha256 = "$HASH"
roles = ["ihub", "operator", "auditor"]
[log]
level = "warn"
TOML
  "$BIN" serve --config "$WORK/$name.toml" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  PIDS+=($!)
  GW_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && return 0; sleep 0.1; done
  echo "gateway $name did not start" >&2; cat "$WORK/$name.err" >&2; exit 1
}
run_wrk() { # port [connections]
  wrk -t2 -c"${2:-$CONNS}" -d"${SECS}s" --latency -s ops/bench/post_incident.lua "http://127.0.0.1:$1" | grep '^RESULT'
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

echo "# $(date -u +%FT%TZ) $(nproc) cores; ${SECS}s per run; $CONNS connections; body $(wc -c < "$BODY") bytes; $(psql -At "$ADMIN" -c 'show server_version')"

start_gateway sqlite 18181 "sqlite://$WORK/sqlite.db"
SQ=$(run_wrk 18181); stop "$GW_PID"
echo "sqlite:        $SQ"

start_gateway pg1 18182 "$PG_URL"
PG1=$(run_wrk 18182); stop "$GW_PID"
echo "postgres:      $PG1"

start_gateway pg2a 18183 "$PG_URL"; A=$GW_PID
start_gateway pg2b 18184 "$PG_URL"; B=$GW_PID
run_wrk 18183 $((CONNS / 2)) > "$WORK/a.txt" &
WA=$!
run_wrk 18184 $((CONNS / 2)) > "$WORK/b.txt"
wait $WA
stop "$A"; stop "$B"
RA=$(field rps < "$WORK/a.txt"); RB=$(field rps < "$WORK/b.txt")
echo "postgres x2:   node A $(cat "$WORK/a.txt")"
echo "               node B $(cat "$WORK/b.txt")"
echo "               total rps=$(python3 -c "print(round($RA + $RB))")"

cat > "$WORK/verify.toml" <<TOML
[journal]
url = "$PG_URL"
TOML
echo "audit verify:  $("$BIN" --config "$WORK/verify.toml" audit verify | tail -1)"
echo "rows:          $(psql -At "$PG_URL" -c "select count(*) || ' exchanges, ' || (select count(*) from audit) || ' audit records (max seq ' || (select max(seq) from audit) || ')' from exchanges")"
