#!/usr/bin/env bash
# SQL-level tests: starts a throwaway cluster (pg_cron preloaded), runs every
# pg_test/sql/*.sql through pg_regress against pg_test/expected/*.out, and prints
# "sql tests: N passed, M failed". Assumes the extension is installed (make install).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${AUDIT_DB_TEST_DIR:-/tmp/audit_db_sqltest}
port=${AUDIT_DB_TEST_PORT:-55432}
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir)
regress="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
[ "$PG_CONFIG" != /usr/bin/pg_config ] && export LD_LIBRARY_PATH="$("$PG_CONFIG" --libdir)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# pg_cron exists only for Debian's PostgreSQL 15 here: without it the tests that
# schedule a job take their expected output without pg_cron (pg_regress's _1 files).
preload=audit_db
[ -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ] && preload=pg_cron,audit_db

scripts/cluster.sh start "$dir" "$port" \
    "shared_preload_libraries = '$preload'" \
    "cron.database_name = 'audit_regress'" \
    "cron.host = '$dir/sock'" \
    "max_locks_per_transaction = 256"
trap 'scripts/cluster.sh stop "$dir"' EXIT

export AUDIT_DB_FIXTURES="$root/pg_test/fixtures"
tests=()
skipped=()
for f in pg_test/sql/*.sql; do
    name=$(basename "$f" .sql)
    if [ -n "${1:-}" ] && [[ "$name" != *"$1"* ]]; then continue; fi
    if [ "$name" = 18_pg_cron ] && [[ "$preload" != *pg_cron* ]]; then skipped+=("$name"); continue; fi
    tests+=("$name")
done
[ ${#skipped[@]} = 0 ] || echo "skipped: ${skipped[*]} (pg_cron is not installed for PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}'))"
out="$dir/out"
mkdir -p "$out"
set +e
"$regress" --host="$dir/sock" --port="$port" --user=postgres --bindir="$bindir" \
    --inputdir="$root/pg_test" --outputdir="$out" --dbname=audit_regress \
    --load-extension=audit_db "${tests[@]}" | tee "$out/summary.txt"
rc=${PIPESTATUS[0]}
set -e
failed=$(grep -cE '^(not ok|test .* \.\.\. FAILED)|FAILED *[0-9]+ ms' "$out/summary.txt" || true)
total=${#tests[@]}
if [ "$rc" != 0 ] && [ -f "$out/regression.diffs" ]; then
    cat "$out/regression.diffs"
    [ "$failed" = 0 ] && failed=1
fi
# A backend killed by a signal (a crash) restarts the whole cluster; the tests would
# still pass afterwards, so the server log is the witness.
if grep -q 'terminated by signal' "$dir/server.log"; then
    grep -B2 -A2 'terminated by signal' "$dir/server.log"
    failed=$((failed + 1)); rc=1
fi
echo "sql tests: $((total - failed)) passed, $failed failed"
exit "$rc"
