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

# Binaries the black-box suites run.
cargo build --workspace --bins

exec cargo nextest run --workspace --no-fail-fast "$@"
