#!/usr/bin/env bash
# The benchmarks: starts a throwaway cluster (fsync on, as in production), installs
# audit_db and pg_partman 4.7 in one database, runs pg_test/bench/bench.py, prints the
# table of medians and ratios (docs/benchmarks.md has the latest). Assumes
# scripts/install.sh has run (make bench does both). BENCH_ROWS, BENCH_RUNS and
# BENCH_BIG_RUNS scale it.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${BENCH_DIR:-/tmp/audit_db_bench}
port=${BENCH_PORT:-55435}
scripts/cluster.sh start "$dir" "$port" "fsync = on" "shared_buffers = '512MB'" "max_wal_size = '4GB'" \
    "max_locks_per_transaction = 256" "audit_db.sealer_database = 'bench'" >/dev/null
trap 'scripts/cluster.sh stop "$dir"' EXIT
psql -h "$dir/sock" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE bench"
psql -h "$dir/sock" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 -d bench \
    -c "SET client_min_messages = warning" -c "CREATE EXTENSION audit_db" \
    -c "CREATE SCHEMA partman" -c "CREATE EXTENSION pg_partman SCHEMA partman"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(psql -h "$dir/sock" -p "$port" -U postgres -X -At -c 'SELECT version()' | cut -d, -f1)"
PATH="$(/usr/bin/pg_config --bindir):$PATH" BENCH_SOCK="$dir/sock" BENCH_PORT="$port" python3 pg_test/bench/bench.py
