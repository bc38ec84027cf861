#!/usr/bin/env bash
# Bulk replay rate against the Athena simulator (issue 3): seeds N parked exchanges into a fresh
# SQLite journal, replays them all with one job, reports children created/s, delivered/s
# end to end, and the simulator's created and duplicate counts.
#   ops/bench/bulk-replay.sh [N=100000] [WORKERS=64] [STEP]
# STEP is the children created per replay step (`replay.batch`); default: the shipped default.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo run --release -q -p nmpp-tests --example bulk_replay_bench -- "${1:-100000}" "${2:-64}" ${3:+"$3"}
