#!/usr/bin/env bash
# Runs the whole test suite, starting what the tests need. Used by .ci/run and by developers.
#   ops/test.sh            # everything
#   ops/test.sh -p mappings  # extra arguments go to cargo nextest run
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked

# PostgreSQL (the production journal backend's tests): start the local cluster if it is down.
if command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi

# A Kafka-protocol broker for the Kafka sink's tests (fixtures::tansu finds it here). Built once
# and cached: building it inside a test would hold a test slot for the whole build.
TANSU_ROOT="$HOME/.cache/nmpp-gateway/tansu"
if [ -z "${TANSU_BIN:-}" ] && [ ! -x "$TANSU_ROOT/bin/tansu" ] && ! command -v tansu >/dev/null; then
  echo "building tansu 0.6.0 into $TANSU_ROOT (once; ~15 min)"
  cargo install tansu --version 0.6.0 --features dynostore,libsql --locked --root "$TANSU_ROOT"
fi

# Binaries the black-box suites run.
cargo build --workspace --bins

exec cargo nextest run --workspace --no-fail-fast "$@"
