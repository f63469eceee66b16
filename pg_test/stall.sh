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
# Then pg_dump held open for a whole scenario while maintenance must create partitions
# ahead, with the DEFAULT partition (creation cannot lock it and is skipped) and
# without it (default_partition = false: creation needs only SHARE UPDATE EXCLUSIVE).
# fsync is off here: the test is about lock queues, not the disk.
# Prints "stall tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
start_cluster "${AUDIT_DB_STALL_DIR:-/tmp/audit_db_stalltest}" "${AUDIT_DB_STALL_PORT:-55443}" \
    "audit_db.seal_interval = 0" "fsync = off" "log_lock_waits = on" "deadlock_timeout = 20ms"
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
# Polls (the catalog, 10 ms apart, at most 500 times) until QUERY returns 1.
wait_until_one() {
    for _ in $(seq 1 500); do
        [ "$(psql -c "$1")" = 1 ] && return 0
        "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -q -c "SELECT pg_sleep(0.01)" >/dev/null
    done
    return 1
}
wait_for_reader() {
    wait_until_one "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%stall reader%' AND wait_event = 'PgSleep'"
}

# A maintenance run's retention steps, counted by action ("dropped 3").
maintenance() {
    psql -c "SET audit_db.lock_attempt_timeout = $1" -c "SET client_min_messages = error" \
         -c "SELECT string_agg(action || ' ' || n, ', ' ORDER BY action)
               FROM (SELECT action, count(*) AS n FROM audit_partition_maintenance()
                      WHERE action IN ('dropped', 'skipped', 'overdue', 'failed') GROUP BY 1) s"
}

# From pgbench's latency logs of a scenario (-l: client, transaction, latency in us,
# script, epoch seconds, us): sets max_ms and zero_seconds (seconds without an insert).
latency_figures() {
    max_ms=$(cat "$dir"/lat_"$1"* | awk '{ if ($3 > m) m = $3 } END { printf "%d", m / 1000 }')
    zero_seconds=$(cat "$dir"/lat_"$1"* | awk '{ n[$5]++; if (!f || $5 < f) f = $5; if ($5 > l) l = $5 }
        END { z = 0; for (s = f; s <= l; s++) if (!(s in n)) z++; print z }')
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
    latency_figures "$tag"
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
new_max=$max_ms new_zero=$zero_seconds

# pg_dump for the whole scenario (issue 19): a real pg_dump of the database writes
# into a FIFO that is opened but not read until the end, so it holds its ACCESS SHARE
# locks on every table it dumps throughout. Two parents: audit_log and app_events, a
# table of the application's kept by audit_db. (pg_dump does not lock audit_log and
# audit_log_default: as members of the extension they are not dumped, only the
# partitions are.) Writers insert into both while maintenance must create three
# partitions ahead of each (premake + 3).
cat > "$dir/writer2.sql" <<'SQL'
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES (now(), 'org-1', 'stall.insert', 'ok');
INSERT INTO app_events (ts, what) VALUES (now(), 'stall.insert');
SQL
chmod 644 "$dir/writer2.sql"
psql -c "CREATE TABLE app_events (ts timestamptz NOT NULL, what text) PARTITION BY RANGE (ts)" \
     -c "CREATE TABLE app_events_default PARTITION OF app_events DEFAULT" \
     -c "INSERT INTO audit_partition_config (parent, premake) VALUES ('app_events', 1)" \
     -c "SELECT count(*) FROM audit_partition_maintenance()" \
     -c "INSERT INTO app_events SELECT now(), repeat('x', 100) FROM generate_series(1, 20000)" >/dev/null
created_by_parent() {
    psql -c "SET audit_db.lock_attempt_timeout = 50" -c "SET client_min_messages = error" \
         -c "SELECT string_agg(parent || ': ' || c || ' created, ' || s || ' skipped', '; ' ORDER BY parent::text)
               FROM (SELECT parent, count(*) FILTER (WHERE action = 'created') AS c,
                            count(*) FILTER (WHERE action IN ('skipped', 'failed')) AS s
                       FROM audit_partition_maintenance() WHERE parent IN ('audit_log'::regclass, 'app_events'::regclass) GROUP BY parent) m"
}
dump_scenario() {
    local default=$1 tag=$2
    psql -c "UPDATE audit_partition_config SET default_partition = $default" \
         -c "SELECT count(*) FROM audit_partition_maintenance()" >/dev/null
    rm -f "$dir"/lat_"$tag"* "$dir/dump.fifo"
    mkfifo "$dir/dump.fifo"
    "$bindir/pg_dump" -h "$dir/sock" -p "$port" -U postgres -d postgres -f "$dir/dump.fifo" 2>"$dir/pg_dump_$tag.err" &
    local dump=$!
    exec 3<"$dir/dump.fifo"
    # Until pg_dump holds its lock on app_events (it locks every table before it
    # writes any data).
    local held=0
    wait_until_one "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE a.application_name = 'pg_dump' AND l.relation = 'app_events'::regclass AND l.granted" && held=1
    "$bindir/pgbench" -h "$dir/sock" -p "$port" -U postgres -n -M prepared -c 2 -j 2 -T 6 \
        -l --log-prefix="$dir/lat_$tag" -f "$dir/writer2.sql" postgres >"$dir/pgbench_$tag.log" 2>&1 &
    local bench=$!
    psql -c "UPDATE audit_partition_config SET premake = premake + 3" >/dev/null
    created=$(created_by_parent)
    dump_running=$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'")
    wait "$bench"
    cat <&3 >/dev/null
    exec 3<&-
    wait "$dump"; dump_status=$?
    dump_held=$held
    latency_figures "$tag"
}
# Enough rows that the dump outgrows the FIFO's buffer and blocks there.
psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, action, status, details)
         SELECT now(), 'org-1', 'stall.fill', 'ok', jsonb_build_object('n', i, 'pad', repeat('x', 100)) FROM generate_series(1, 20000) i" >/dev/null
dump_scenario true with_default
with_created=$created with_max=$max_ms
check "pg_dump, DEFAULT partitions kept: the dump holds its locks during maintenance, then completes" "1 1 0" "$dump_held $dump_running $dump_status"
check "pg_dump, DEFAULT partitions kept: app_events' creation cannot lock its DEFAULT partition and is skipped" \
    "app_events: 0 created, 3 skipped; audit_log: 3 created, 0 skipped" "$created"
check "pg_dump, DEFAULT partitions kept: no insert waits more than 100 ms" "true" "$([ "$max_ms" -le 100 ] && echo true || echo "false ($max_ms ms)")"
dump_scenario false without_default
check "pg_dump, no DEFAULT partitions: the dump holds its locks during maintenance, then completes" "1 1 0" "$dump_held $dump_running $dump_status"
check "pg_dump, no DEFAULT partitions: maintenance creates three partitions ahead of each parent while the dump runs" \
    "app_events: 3 created, 0 skipped; audit_log: 3 created, 0 skipped" "$created"
check "pg_dump, no DEFAULT partitions: no insert waits more than 100 ms, no second without inserts" "true 0" \
    "$([ "$max_ms" -le 100 ] && echo true || echo "false ($max_ms ms)") $zero_seconds"
echo "figures: pg_dump held open throughout: with DEFAULT partitions ${with_created}, max insert latency ${with_max} ms;" \
     "without: ${created}, max insert latency ${max_ms} ms"
echo "figures: max insert latency ${new_max} ms, seconds without inserts ${new_zero} (50 ms attempts);" \
     "0.5.0's single 2 s wait: max ${old_max} ms, seconds without inserts ${old_zero}, maintenance: ${old_during}"
finish "stall"
