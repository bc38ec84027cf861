#!/usr/bin/env bash
# Durable accepts/s of POST /incidents on the PostgreSQL journal beside the SQLite journal, in one
# run (issue 3). Same release binary, same wrk load (ops/bench/post_incident.lua: a ~5 KB SDM
# document, unique submissionId per request), same connections and duration, delivery paused
# (pure durable ingest: a 201 only after the exchange and its audit record are committed —
# fsync'd WAL on SQLite, synchronous_commit=on on PostgreSQL):
#   0. the ceiling: a bare axum handler parsing the same body (fixtures' bench-ceiling), no
#      journal, no validation: how fast this machine is (the machines differ by 2x and more);
#   1. this disk's raw fsync rate (4 KiB append + fsync);
#   2. SQLite journal, as shipped (group commit);
#   3. PostgreSQL journal, as shipped (group commit), on a fresh database;
#   4. PostgreSQL journal with group commit off (journal.max_batch = 1): one transaction and one
#      commit per write, the baseline for 3;
#   5. PostgreSQL journal, as shipped, delivering to the Athena simulator while accepting.
# PostgreSQL is the server at PGURL (default the local cluster, 127.0.0.1:5432, trust auth); each
# PostgreSQL run gets its own database, dropped at the end. The load generator, the gateway and
# PostgreSQL share the machine's cores.
# Usage: ops/bench/ingest-pg.sh [SECONDS=20] [CONNECTIONS=64]
#        PROFILE=debug ops/bench/ingest-pg.sh 3   # smoke-test the script only; figures meaningless
#        BIN_DIR=/path/to/saved/binaries ops/bench/ingest-pg.sh 10 64
#            # runs saved nmpp-gateway and athena-sim binaries instead of building this tree's
#            # (e.g. a "before" build beside an "after" one, run alternately in one period)
#        QUICK=1 ops/bench/ingest-pg.sh 10 64   # runs 1-3 only (fsync, SQLite, PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-20}
CONNS=${2:-64}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
command -v psql >/dev/null || { echo "psql is needed (postgresql-client)" >&2; exit 2; }
psql -q "$PGURL" -c 'select 1' >/dev/null || { echo "no PostgreSQL at $PGURL" >&2; exit 2; }
PROFILE=${PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --profile "$([ "$PROFILE" = debug ] && echo dev || echo "$PROFILE")" -q -p gateway --bin nmpp-gateway -p fixtures --bin athena-sim --bin bench-ceiling
  BIN_DIR=$TARGET/$PROFILE
fi
mkdir -p "$TARGET/bench"
WORK=$(mktemp -d -p "$TARGET/bench" ingest-pg.XXXX)
# Private copies, so a concurrent build cannot swap the binaries mid-run.
cp "$BIN_DIR/nmpp-gateway" "$BIN_DIR/athena-sim" "$WORK/"
# (binaries saved before the ceiling existed have no bench-ceiling: that step is then skipped)
if [ -x "$BIN_DIR/bench-ceiling" ]; then cp "$BIN_DIR/bench-ceiling" "$WORK/"; fi
BIN=$WORK/nmpp-gateway
SIM=$WORK/athena-sim
SECRET=bench-secret-0123456789abcdef
HASH=$("$BIN" hash-secret "$SECRET")
export API_KEY=bench API_SECRET=$SECRET BODY=$PWD/ops/bench/incident-5kb.json
PIDS=()
DBS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for d in "${DBS[@]:-}"; do [ -n "$d" ] && psql -q "$PGURL" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

pg_db() { # name → sets URL to a fresh database (not in a subshell: DBS must keep the name)
  local db="nmpp_bench_$1_$$"
  psql -q "$PGURL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null 2>&1
  DBS+=("$db")
  URL="${PGURL%/*}/$db"
}

start_gateway() { # name port journal_url max_batch paused
  local name=$1 port=$2 url=$3 batch=$4 paused=$5
  cat > "$WORK/$name.toml" <<TOML
[http]
listen = "127.0.0.1:$port"
[journal]
url = "$url"
max_batch = $batch
[delivery]
paused = $paused
[forces.bench]
name = "Bench Constabulary"
ihub_force_id = 42
records = { type = "athena", base_url = "http://127.0.0.1:18199" }
[auth.clients.bench]
secret_sha256 = "$HASH"
roles = ["ihub", "operator"]
[log]
level = "warn"
TOML
  "$BIN" serve --config "$WORK/$name.toml" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  PIDS+=($!)
  GW_PID=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && return 0; sleep 0.1; done
  echo "gateway $name did not start" >&2; cat "$WORK/$name.err" >&2; exit 1
}
run_wrk() { # port
  wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s ops/bench/post_incident.lua "http://127.0.0.1:$1" | grep '^RESULT'
}
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
stored() { # journal_url → exchanges stored (PostgreSQL)
  psql -qtA "$1" -c 'select count(*) from exchanges'
}

"$SIM" --listen 127.0.0.1:18199 > "$WORK/sim.out" 2>&1 &
PIDS+=($!)

echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $PROFILE build (binaries from $BIN_DIR); load $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; ${SECS}s per run; $CONNS connections; body $(wc -c < "$BODY") bytes; $(psql -qtA "$PGURL" -c 'show server_version') (synchronous_commit=on)"
if [ -x "$WORK/bench-ceiling" ]; then
  "$WORK/bench-ceiling" --listen 127.0.0.1:18180 > "$WORK/ceiling.out" 2>&1 &
  CEIL_PID=$!
  PIDS+=($CEIL_PID)
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18180/ && break; sleep 0.1; done
  CEIL=$(run_wrk 18180); stop "$CEIL_PID"
  echo "ceiling:      $CEIL (bare axum parsing the body; no journal)"
fi
FSYNC=$(python3 ops/bench/fsync_rate.py "$WORK" 5)
echo "fsync:        $FSYNC"

start_gateway sqlite 18181 "sqlite://$WORK/sqlite.db" 4096 true
SQLITE=$(run_wrk 18181); stop "$GW_PID"
echo "sqlite:       $SQLITE"

pg_db ours
start_gateway pg 18182 "$URL" 2048 true
PG=$(run_wrk 18182); stop "$GW_PID"
echo "postgres:     $PG stored=$(stored "$URL")"

if [ -z "${QUICK:-}" ]; then
  pg_db baseline
  start_gateway pg_baseline 18183 "$URL" 1 true
  PGB=$(run_wrk 18183); stop "$GW_PID"
  echo "pg batch=1:   $PGB stored=$(stored "$URL")"

  pg_db full
  start_gateway pg_full 18184 "$URL" 2048 false
  PGF=$(run_wrk 18184); stop "$GW_PID"
  echo "postgres+dlv: $PGF stored=$(stored "$URL")"

fi
s=$(echo "$SQLITE" | field rps); p=$(echo "$PG" | field rps)
ratios="postgres/sqlite = $(python3 -c "print(f'{$p/$s:.2f}')")"
if [ -z "${QUICK:-}" ]; then
  b=$(echo "$PGB" | field rps)
  ratios="$ratios; postgres group commit/batch=1 = $(python3 -c "print(f'{$p/$b:.1f}')")x"
fi
if [ -n "${CEIL:-}" ]; then
  c=$(echo "$CEIL" | field rps)
  ratios="$ratios; postgres/ceiling = $(python3 -c "print(f'{$p/$c:.2f}')"), sqlite/ceiling = $(python3 -c "print(f'{$s/$c:.2f}')")"
fi
echo "ratios: $ratios; target >= 5000/s on postgres: $(python3 -c "print('met' if $p >= 5000 else 'not met')"); load $(cut -d' ' -f1-3 /proc/loadavg)"
