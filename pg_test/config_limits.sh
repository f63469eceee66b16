#!/usr/bin/env bash
# The largest partition configuration the CHECKs allow, with writers running (issue
# 25): audit_log daily, premake 1000, default_partition false. Each maintenance run
# creates the nearest partitions within an eighth of the shared lock table (the rest
# in the next runs), a parent never gets more partitions than a query over all of
# them can lock in a quarter of it, the DEFAULT partition stays while any partition
# ahead is missing, no run fails and no insert fails. Before the bound, every run
# failed with 53200 (out of shared memory), writers too, and DEFAULT was dropped all
# the same.
# Prints "config limit tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
# PostgreSQL's default lock table (max_locks_per_transaction = 64).
start_cluster "${AUDIT_DB_LIMITS_DIR:-/tmp/audit_db_limitstest}" "${AUDIT_DB_LIMITS_PORT:-55445}" \
    "max_locks_per_transaction = 64"
psql -c "CREATE EXTENSION audit_db" >/dev/null
psql -c "UPDATE audit_partition_config SET \"interval\" = 'daily', premake = 1000, default_partition = false
          WHERE parent = 'audit_log'::regclass" >/dev/null
cat > "$dir/insert.sql" <<'SQL'
INSERT INTO audit_log ("timestamp", action, status) VALUES (now() + random() * interval '400 days', 'limits.insert', 'ok');
SQL
chmod 644 "$dir/insert.sql"
"$bindir/pgbench" -h "$dir/sock" -p "$port" -U postgres -n -c 2 -j 2 -T 30 -f "$dir/insert.sql" postgres \
    >"$dir/pgbench.log" 2>&1 &
bench=$!
runs=0 failed_steps=0 default_kept=true limit_reported=false
while [ "$runs" -lt 30 ]; do
    runs=$((runs + 1))
    out=$(psql -c "SELECT action || ' ' || coalesce(detail, '') FROM audit_partition_maintenance() WHERE parent = 'audit_log'::regclass OR action = 'failed'")
    failed_steps=$((failed_steps + $(echo "$out" | grep -c "^failed" || true)))
    echo "$out" | grep "^failed" | head -3 >> "$dir/failures.log"
    [ "$(psql -c "SELECT to_regclass('audit_log_default') IS NOT NULL")" = t ] || default_kept=false
    echo "$out" | grep -q '^deferred .*raise max_locks_per_transaction' && limit_reported=true
    echo "$out" | grep -q '^created' || break
done
wait "$bench"
bench_rc=$?
check "no maintenance step failed in $runs runs (each run within the lock table)" "0" "$failed_steps"
check "creation was spread over more than one run" "true" "$([ "$runs" -gt 2 ] && echo true || echo false)"
check "maintenance stops at what the lock table allows for one parent, and says so" "true" "$limit_reported"
check "the DEFAULT partition stayed: partitions ahead are still missing" "true" "$default_kept"
check "a query over the whole of audit_log still runs (it locks every partition)" "true" \
    "$([[ "$(psql -c "SELECT count(*) FROM audit_log")" =~ ^[0-9]+$ ]] && echo true || echo false)"
check "verification still runs" "0|0|0" \
    "$(psql -c "SELECT hash_mismatches || '|' || signature_mismatches || '|' || chain_breaks FROM audit_verify_integrity()" | tail -1)"
check "pgbench writers: no insert failed while maintenance ran" "0" "$bench_rc"
check "pgbench writers: some inserts were made" "true" \
    "$([ "$(psql -c "SELECT count(*) FROM audit_log WHERE action = 'limits.insert'")" -gt 0 ] 2>/dev/null && echo true || echo false)"
grep -E "error|ERROR" "$dir/pgbench.log" | head -5
finish "config limit"
