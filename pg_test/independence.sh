#!/usr/bin/env bash
# The SQL tests (pg_test/run.sh) pass alone and in any order (issue 29): every file in
# a cluster of its own, then all of them in reverse order and in a shuffled order (the
# seed is printed; AUDIT_DB_TEST_SEED=N repeats it). One line per run, then
# "independence tests: N passed, M failed" (one test per run). The lone files run
# AUDIT_DB_TEST_JOBS (default 4) at a time, each cluster on a port of its own
# (AUDIT_DB_TEST_PORT + k): most of a lone run is initdb's fsync and the server's start.
#   PG_CONFIG=... pg_test/independence.sh
set -uo pipefail
cd "$(dirname "$0")/.."
base=${AUDIT_DB_TEST_DIR:-/tmp/audit_db_independence}
port=${AUDIT_DB_TEST_PORT:-55460}
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
passed=0
failed=0

jobs=${AUDIT_DB_TEST_JOBS:-4}
logname() { echo "$base.$(echo "$1" | tr -c 'a-z0-9_\n' '_').log"; }
run_in() { # slot, description, then run.sh's environment and arguments: writes the log and .rc
    local slot=$1 what=$2 log
    shift 2
    log=$(logname "$what")
    env AUDIT_DB_TEST_DIR="$base.$slot" AUDIT_DB_TEST_PORT=$((port + slot)) "$@" >"$log" 2>&1
    echo $? >"$log.rc"
}
report() { # description: ok / not ok from the log that run_in left
    local what=$1 log
    log=$(logname "$what")
    if [ "$(cat "$log.rc" 2>/dev/null)" = 0 ]; then
        passed=$((passed + 1)); echo "ok - $what ($(grep -E '^sql tests: ' "$log"))"
    else
        failed=$((failed + 1)); echo "not ok - $what (log $log)"
        grep -E '^(order|not ok|failed|sql tests)' "$log"
    fi
}

pg_cron=false
[ -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ] && pg_cron=true
names=()
for f in pg_test/sql/*.sql; do
    name=$(basename "$f" .sql)
    [ "$name" = 18_pg_cron ] && ! $pg_cron && continue
    names+=("$name")
done
rm -f "$base".*.log "$base".*.log.rc
# Slot k runs the lone files k, k + jobs, k + 2 jobs, ... one after another.
for ((slot = 0; slot < jobs; slot++)); do
    (
        for ((k = slot; k < ${#names[@]}; k += jobs)); do
            run_in "$slot" "${names[$k]} alone" pg_test/run.sh "${names[$k]}"
        done
    ) &
done
wait
for name in "${names[@]}"; do report "$name alone"; done
run_in 0 "all in reverse order" AUDIT_DB_TEST_ORDER=reverse pg_test/run.sh
report "all in reverse order"
run_in 0 "all in shuffled order" AUDIT_DB_TEST_ORDER=shuffle pg_test/run.sh
report "all in shuffled order"
grep -h '^order: shuffle' "$base".*shuffled*.log 2>/dev/null
echo "independence tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
