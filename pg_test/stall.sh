#!/usr/bin/env bash
# Maintenance never stalls writers (issue 19), in a cluster of its own. Two pgbench
# writers insert into audit_log while a long reader (a report, or pg_dump) holds a
# 6-second read of audit_log open and audit_partition_maintenance() tries to drop three
# partitions past retention. Run twice, side by side:
#   - today's attempts (audit_db.lock_attempt_timeout 50 ms, retried with backoff within
#     the parent's 2 s lock_timeout): no insert waits more than 100 ms, no second passes
#     without inserts, and the drops complete in the first run after the reader ends;
#   - 0.5.0's behaviour, one attempt as long as the whole window (lock_attempt_timeout
#     = 2 s): printed for comparison (inserts stall for the whole wait).
# fsync is off here: the test is about lock queues, not the disk.
# Prints "stall tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
start_cluster "${AUDIT_DB_STALL_DIR:-/tmp/audit_db_stalltest}" "${AUDIT_DB_STALL_PORT:-55443}" \
    "audit_db.seal_interval = 0" "fsync = off"
psql -c "CREATE EXTENSION audit_db" >/dev/null
cat > "$dir/writer.sql" <<'SQL'
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES (now(), 'org-1', 'stall.insert', 'ok');
SQL
chmod 644 "$dir/writer.sql"

# Three months of 2020 with rows, one year of retention: all three are expired.
expired_partitions() {
    psql -c "SELECT count(*) FROM audit_create_partitions('audit_log', 2, '2020-01-15')" \
         -c "INSERT INTO audit_log (\"timestamp\", action, status)
             SELECT '2020-01-01'::timestamptz + i * interval '1 hour', 'old', 'ok' FROM generate_series(0, 2000) i" \
         -c "UPDATE audit_partition_config SET retention = '1 year', lock_timeout = '2 seconds'
              WHERE parent = 'audit_log'::regclass" >/dev/null
}

# Waits (polling the catalog, not the clock) until the long reader holds its read.
wait_for_reader() {
    for _ in $(seq 1 500); do
        [ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%stall reader%' AND wait_event = 'PgSleep'")" = 1 ] && return 0
        "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -q -c "SELECT pg_sleep(0.01)" >/dev/null
    done
    return 1
}

# A maintenance run's retention steps, counted by action ("dropped 3").
maintenance() {
    psql -c "SET audit_db.lock_attempt_timeout = $1" -c "SET client_min_messages = error" \
         -c "SELECT string_agg(action || ' ' || n, ', ' ORDER BY action)
               FROM (SELECT action, count(*) AS n FROM audit_partition_maintenance()
                      WHERE action IN ('dropped', 'skipped', 'overdue', 'failed') GROUP BY 1) s"
}

# One scenario with the given attempt timeout; sets: max_ms, zero_seconds, during, after.
scenario() {
    local attempt=$1 tag=$2
    expired_partitions
    rm -f "$dir"/lat_"$tag"*
    "$bindir/pgbench" -h "$dir/sock" -p "$port" -U postgres -n -M prepared -c 2 -j 2 -T 10 \
        -l --log-prefix="$dir/lat_$tag" -f "$dir/writer.sql" postgres >"$dir/pgbench_$tag.log" 2>&1 &
    local bench=$!
    psql -c "BEGIN" -c "SELECT count(*) FROM audit_log" \
         -c "SELECT pg_sleep(6) /* stall reader */" -c "COMMIT" >/dev/null &
    local reader=$!
    wait_for_reader || echo "    (the long reader did not start)"
    during=$(maintenance "$attempt")
    wait "$reader"
    after=$(maintenance "$attempt")
    wait "$bench"
    # pgbench -l: client, transaction, latency (us), script, epoch seconds, us.
    max_ms=$(cat "$dir"/lat_"$tag"* | awk '{ if ($3 > m) m = $3 } END { printf "%d", m / 1000 }')
    zero_seconds=$(cat "$dir"/lat_"$tag"* | awk '{ n[$5]++; if (!f || $5 < f) f = $5; if ($5 > l) l = $5 }
        END { z = 0; for (s = f; s <= l; s++) if (!(s in n)) z++; print z }')
}

scenario 2000 old
old_max=$max_ms old_zero=$zero_seconds old_during=$during
scenario 50 new
check "with a long reader open, maintenance leaves the drops (long past retention: overdue)" "overdue 3" "$during"
check "no insert waits more than 100 ms behind maintenance" "true" "$([ "$max_ms" -le 100 ] && echo true || echo "false ($max_ms ms)")"
check "no second without inserts" "0" "$zero_seconds"
check "the first run after the reader ends drops the three partitions" "dropped 3" "$after"
check "no partition past retention is left" "0" \
    "$(psql -c "SELECT count(*) FROM audit_partitions('audit_log') WHERE NOT is_default AND range_to < now() - interval '1 year'")"
echo "figures: max insert latency ${max_ms} ms, seconds without inserts ${zero_seconds} (50 ms attempts);" \
     "0.5.0's single 2 s wait: max ${old_max} ms, seconds without inserts ${old_zero}, maintenance: ${old_during}"
finish "stall"
