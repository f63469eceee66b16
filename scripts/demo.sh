#!/usr/bin/env bash
# The demo: installs prerequisites, builds and installs audit_db, starts a throwaway
# PostgreSQL 15 cluster, runs scripts/demo.sql, and stops the cluster again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh
echo "== building and installing audit_db"
scripts/install.sh 2>&1 | tail -1
dir=/tmp/audit_db_demo
port=55433
scripts/cluster.sh start "$dir" "$port"
trap 'scripts/cluster.sh stop "$dir"' EXIT
psql -X -q -h "$dir/sock" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -f scripts/demo.sql
