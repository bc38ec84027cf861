#!/usr/bin/env bash
# The kill -9 crash loop of issue 3 at full length, on both journal backends:
#   - SQLite, one node                       (tests/tests/crash.rs)
#   - PostgreSQL, one node                   (tests/tests/crash_pg.rs)
#   - PostgreSQL, two nodes killed in turn   (tests/tests/crash_pg.rs, with a lease takeover)
# Each run: concurrent POST /incidents against the real binary, kill -9 at a random moment,
# restart; at the end every acknowledged submission must be journalled and delivered, and the
# Athena simulator must hold one record per idempotency key. CI runs the same tests with 20
# cycles; this script runs 100 (or CYCLES) and prints one line per run and a verdict.
# Usage: ops/crash-loop.sh [CYCLES=100] [sqlite|postgres|all]
# Needs PostgreSQL at 127.0.0.1:5432 (trust auth) or NMPP_TEST_PG_URL for the PostgreSQL runs.
set -euo pipefail
cd "$(dirname "$0")/.."
CYCLES=${1:-100}
WHICH=${2:-all}
case "$WHICH" in
  sqlite)   FILTER='binary(crash) & test(/kill_9/)' ;;
  postgres) FILTER='binary(crash_pg) & test(/kill_9|killed_alternately/)' ;;
  all)      FILTER='(binary(crash) & test(/kill_9/)) | (binary(crash_pg) & test(/kill_9|killed_alternately/))' ;;
  *) echo "usage: $0 [CYCLES] [sqlite|postgres|all]" >&2; exit 2 ;;
esac
command -v cargo-nextest >/dev/null || { echo "cargo-nextest is needed: cargo install cargo-nextest" >&2; exit 2; }
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

cargo build -q -p gateway --bin nmpp-gateway
# Run a private copy of the binary, so a concurrent build cannot swap it mid-run.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp "$TARGET/debug/nmpp-gateway" "$WORK/nmpp-gateway"
export NMPP_GATEWAY_BIN=$WORK/nmpp-gateway NMPP_CRASH_CYCLES=$CYCLES
LOG=$TARGET/crash-loop-$(date -u +%Y%m%dT%H%M%SZ).log

echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores; $CYCLES kill -9 cycles per run; backends: $WHICH"
START=$(date +%s)
set +e
# --no-capture runs the tests one after another (2 cores) and shows their summary lines.
cargo nextest run -p nmpp-tests --test crash --test crash_pg --no-capture --no-fail-fast \
  -E "$FILTER" 2>&1 | tee "$LOG" | grep -E '^crash test|^\s+(PASS|FAIL|SIGSEGV|SIGABRT|TIMEOUT)|panicked|Summary'
STATUS=${PIPESTATUS[0]}
set -e
echo "# elapsed $(( $(date +%s) - START )) s"
if [ "$STATUS" -eq 0 ]; then
  echo "RESULT: PASS — $CYCLES kill -9 cycles per run, zero acknowledged exchanges lost, zero delivered twice under different idempotency keys"
else
  echo "RESULT: FAIL (exit $STATUS)" >&2
  grep -E "panicked|assertion|timed out" -A4 "$LOG" >&2 || true
  echo "full log: $LOG" >&2
  exit "$STATUS"
fi
