#!/usr/bin/env bash
# Faults in the middle of long operations: a crash (pg_ctl stop -m immediate), a
# cancel (pg_cancel_backend) and a statement_timeout, each during
#   - audit_convert_to_partitioned(..., 'copy') of a 300k-row table,
#   - audit_partition_maintenance() moving 150k rows out of DEFAULT,
#   - audit_pseudonymize_subject() of a subject with 150k events.
# "In the middle" is observed, not slept for: the fault is injected once the backend
# running the operation has written (it holds a transaction id). After each fault the
# data must be exactly as before (the operations are atomic), the integrity chains and
# the schema must verify, and the operation, run again, must complete.
# Prints "fault tests: N passed, M failed" and a "figures:" line.
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
# The sealer worker idles here (seal_interval 0): the sealing case below seals by hand.
start_cluster "${AUDIT_DB_FAULT_DIR:-/tmp/audit_db_faulttest}" "${AUDIT_DB_FAULT_PORT:-55439}" "audit_db.seal_interval = 0"
faults=0

run_bg() { # app_name sql: runs sql in the background as application_name, output in $dir/app.out
    PGAPPNAME=$1 "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -q -At -v VERBOSITY=verbose \
        -c "$2" >"$dir/$1.out" 2>&1 &
    bg=$!
}

wait_writing() { # app_name: until its backend holds a transaction id (it has written); 1 on timeout
    local i
    for i in $(seq 1 600); do
        [ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND state = 'active' AND backend_xid IS NOT NULL")" = 1 ] && return 0
        kill -0 "$bg" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

crash_and_restart() {
    runuser -u postgres -- "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
    wait "$bg" 2>/dev/null
    runuser -u postgres -- env -u RUST_BACKTRACE "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null 2>&1
}

# inject KIND NAME SQL STATE_QUERY: runs SQL, injects the fault KIND (crash, cancel,
# timeout) while it writes, and checks that STATE_QUERY reads as before.
inject() {
    local kind=$1 name=$2 sql=$3 state=$4 before after out
    before=$(psql -c "$state")
    case $kind in
    crash)
        run_bg "fault_$name" "$sql"
        if wait_writing "fault_$name"; then crash_and_restart; faults=$((faults + 1)); else wait "$bg"; fi
        out=$(cat "$dir/fault_$name.out")
        check "$name: crash while it writes; it did not complete" "true" \
            "$(echo "$out" | grep -qE 'server closed the connection|terminating connection' && echo true || echo "false: $out")"
        ;;
    cancel)
        run_bg "fault_$name" "$sql"
        if wait_writing "fault_$name"; then
            psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'fault_$name'" >/dev/null
            faults=$((faults + 1))
        fi
        wait "$bg"
        out=$(cat "$dir/fault_$name.out")
        check "$name: pg_cancel_backend while it writes is 57014 and nothing else" "ERROR:  57014: canceling statement due to user request" \
            "$(echo "$out" | grep '^ERROR' | head -1)"
        ;;
    timeout)
        run_bg "fault_$name" "SET statement_timeout = '300ms'; $sql"
        wait "$bg"
        faults=$((faults + 1))
        out=$(cat "$dir/fault_$name.out")
        check "$name: statement_timeout (300 ms) is 57014 and nothing else" "ERROR:  57014: canceling statement due to statement timeout" \
            "$(echo "$out" | grep '^ERROR' | head -1)"
        ;;
    esac
    after=$(psql -c "$state")
    check "$name: after the $kind the data is exactly as before" "$before" "$after"
}

consistent() { # name: integrity and schema verify, no backend was killed by a signal
    check "$1: audit_verify_integrity finds nothing wrong, audit_verify_schema is empty" "0|0|0|0" \
        "$(psql -c "SELECT hash_mismatches || '|' || signature_mismatches || '|' || chain_breaks FROM audit_verify_integrity()" | grep -v '^NOTICE')|$(psql -c "SELECT count(*) FROM audit_verify_schema()")"
}

psql -c "CREATE EXTENSION audit_db" >/dev/null

# ------------------------------------------------------------ conversion, copy mode
psql -c "CREATE TABLE legacy (id serial PRIMARY KEY, \"timestamp\" timestamptz NOT NULL, action text NOT NULL, status text NOT NULL)" \
     -c "CREATE INDEX legacy_ts ON legacy (\"timestamp\")" \
     -c "INSERT INTO legacy (\"timestamp\", action, status) SELECT '2024-01-01'::timestamptz + i * interval '90 seconds', 'a' || i % 7, 'ok' FROM generate_series(0, 299999) i" >/dev/null
conv_state="SELECT c.relkind || '|' || (SELECT count(*) || '|' || sum(id) FROM legacy) || '|' || (SELECT count(*) FROM pg_class WHERE relname LIKE 'legacy%') FROM pg_class c WHERE c.oid = 'legacy'::regclass"
conv_sql="SELECT audit_convert_to_partitioned('legacy', 'copy')"
for kind in crash cancel timeout; do inject "$kind" convert "$conv_sql" "$conv_state"; done
consistent "convert"
out=$(psql -c "$conv_sql")
check "convert: run again after the faults, it completes with every row" "p|300000|45000150000" \
    "$(psql -c "SELECT c.relkind::text || '|' || count(*) || '|' || sum(id) FROM pg_class c, legacy WHERE c.oid = 'legacy'::regclass GROUP BY c.relkind")"

# ------------------------------------------- maintenance moving rows out of DEFAULT
# 150k events 8..10 months ahead sit in DEFAULT (premake is 6); premake 12 makes the
# next maintenance run create those partitions and move the rows.
psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, action, status)
         SELECT date_trunc('month', now()) + interval '8 months' + i * interval '50 seconds', 'org-' || i % 4, 'fault.event', 'ok'
           FROM generate_series(0, 149999) i" >/dev/null
psql -c "UPDATE audit_partition_config SET premake = 12 WHERE parent = 'audit_log'::regclass" >/dev/null
maint_state="SELECT (SELECT count(*) FROM audit_partitions('audit_log')) || '|' || (SELECT count(*) FROM audit_log_default) || '|' || (SELECT count(*) || '|' || sum(id) FROM audit_log) || '|' || (SELECT count(*) FROM pg_class WHERE relname ~ '^audit_log_\\d')"
maint_sql="SELECT count(*) FROM audit_partition_maintenance()"
for kind in crash cancel timeout; do inject "$kind" maintenance "$maint_sql" "$maint_state"; done
consistent "maintenance"
psql -c "$maint_sql" >/dev/null
check "maintenance: run again, it creates the partitions and DEFAULT is empty, no row lost" "0|150000" \
    "$(psql -c "SELECT (SELECT count(*) FROM audit_log_default) || '|' || (SELECT count(*) FROM audit_log WHERE action = 'fault.event')")"
check "maintenance: a third run has nothing to do" "0" \
    "$(psql -c "SELECT count(*) FROM audit_partition_maintenance() WHERE action IN ('created', 'dropped', 'detached', 'failed')")"

# --------------------------------------------- pseudonymization of a large subject
psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, principal_id, action, status, details)
         SELECT now() - i * interval '10 seconds', 'org-v', 'victim', 'fault.subject', 'ok', jsonb_build_object('email', 'victim@example.org', 'n', i)
           FROM generate_series(0, 149999) i" >/dev/null
pseudo_state="SELECT (SELECT count(*) FROM audit_log WHERE principal_id = 'victim') || '|' || (SELECT count(*) FROM audit_log WHERE details ? 'pseudonymized') || '|' || (SELECT count(*) FROM pseudonym_mapping)"
pseudo_sql="SELECT audit_pseudonymize_subject('victim', 'encryption')"
for kind in crash cancel timeout; do inject "$kind" pseudonymize "$pseudo_sql" "$pseudo_state"; done
consistent "pseudonymize"
check "pseudonymize: run again, it pseudonymizes all 150000 events" "150000" "$(psql -c "$pseudo_sql")"
check "pseudonymize: no event names the subject, two mapping rows (the subject id, its e-mail)" "0|2" \
    "$(psql -c "SELECT (SELECT count(*) FROM audit_log WHERE principal_id = 'victim') || '|' || (SELECT count(*) FROM pseudonym_mapping)")"
consistent "after completion"

# ------------------------------------------------------------- sealing
# Everything above is unsealed (the worker idles): one audit_seal() reads all of it.
# A crash in the middle leaves no block (its transaction never committed); after the
# restart the epoch counter starts from the blocks on disk, new rows get later epochs,
# and sealing resumes with every row in a block.
seal_state="SELECT (SELECT count(*) FROM audit_seal_block) || '|' || (SELECT count(*) FROM audit_log)"
run_bg fault_seal "SELECT blocks FROM audit_seal(0)"
for i in $(seq 1 600); do
    [ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fault_seal' AND state = 'active'")" = 1 ] && break
    sleep 0.05
done
before=$(psql -c "$seal_state")
crash_and_restart; faults=$((faults + 1))
check "seal: crash while sealing; no block was written" "$before" "$(psql -c "$seal_state")"
psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, action, status) VALUES (now(), 'org-v', 'after.crash', 'ok')" >/dev/null
check "seal: after the restart new rows get an epoch later than any block, none earlier than a row written before" "t" \
    "$(psql -c "SELECT seal_epoch > (SELECT coalesce(max(epoch), 0) FROM audit_seal_block)
                   AND seal_epoch >= (SELECT max(seal_epoch) FROM audit_log WHERE action <> 'after.crash')
                  FROM audit_log WHERE action = 'after.crash'")"
seal_run=$(psql -c "SELECT blocks || ' blocks, ' || rows || ' rows: ' || status FROM audit_seal(0)")
check "seal: sealing resumes: every row in a block, verification clean" "0|0|0|0" \
    "$(psql -c "SELECT hash_mismatches || '|' || signature_mismatches || '|' || chain_breaks || '|' || unsealed FROM audit_verify_integrity()" | grep -v '^NOTICE')"
echo "    the sealing run after the restart: $seal_run"

check "no backend was terminated by a signal (server log)" "0" "$(grep -c 'terminated by signal' "$dir/server.log")"
check "every planned fault was injected (4 crashes, 3 cancels, 3 statement timeouts)" "10" "$faults"
echo "figures: faults injected $faults (4 crashes, 3 cancels, 3 statement timeouts expected), rows at stake: 300000 converted, 150000 moved, 150000 pseudonymized"
finish "fault"
