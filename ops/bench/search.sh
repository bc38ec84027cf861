#!/usr/bin/env bash
# Search latency at 10 million journalled exchanges, PostgreSQL beside SQLite (issue 3).
# Loads ROWS synthetic exchanges (three years, 43 forces, 5 kinds, 4 targets, 1% parked,
# 0.5% pending, 5% with an error class, 5 exchanges per case) into a fresh PostgreSQL database
# (nmpp_search_bench, dropped and recreated) and a SQLite file, then times operator searches
# through the Journal API: first page (50, newest first), second page by cursor, exact count;
# median of 5 runs after a warm-up. Needs ~10 GB of disk per backend at 10M rows.
# Usage: ops/bench/search.sh [ROWS=10000000] [PG_ADMIN_URL]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-10000000}
ADMIN=${2:-postgres://postgres@127.0.0.1:5432/postgres}
mkdir -p target/bench
cargo run --release -q -p replay --example search_bench -- "$ROWS" target/bench/search.db "$ADMIN" \
  | tee "target/bench/search-$(date -u +%Y%m%dT%H%M%SZ).txt"
