#!/usr/bin/env bash
# The SQL tests (pg_test/run.sh) on other dates (issue 29): a throwaway cluster whose
# wall clock starts at each of the moments below and runs on at the real rate
# (pg_test/clock_shift.c preloaded into every server process; lock_timeout and
# statement_timeout still fire), then one line "any date tests: N passed, M failed".
#   PG_CONFIG=... pg_test/any_date.sh [NAME-FILTER]
#   AUDIT_DB_ANY_DATE_CLOCKS='TIME|ZONE;TIME|ZONE'  other moments (ZONE: the server's timezone)
# Expected outputs must not depend on the date: a test that reads the clock compares
# what it reads with what the extension did at the same time, or passes reference_time.
set -uo pipefail
cd "$(dirname "$0")/.."
base=${AUDIT_DB_TEST_DIR:-/tmp/audit_db_anydate}
port=${AUDIT_DB_TEST_PORT:-55450}
# 1. the last minutes of a 31-day month (the files run before it ends: the 31st plus a
#    month is the 28th);
# 2. that month's last second: the month changes while the cluster starts, the files run
#    in the first minutes of the next;
# 3. 29 February of a leap year;
# 4. a new month in UTC that has not begun yet where the sessions are (pg_regress gives
#    them America/Los_Angeles: 2027-03-01 03:00 UTC is 28 February, 19:00 there);
# 5. and 6. the start and the end of daylight saving time in that zone (2027-03-14 10:00
#    UTC, 2027-11-07 09:00 UTC), the server in that zone too; the change comes about 30 s
#    into the run (or while the cluster starts, on a slow machine);
# 7. a year's last minutes, far ahead (a test's fixed date, 2030 say, has long passed).
clocks=${AUDIT_DB_ANY_DATE_CLOCKS:-2027-01-31 23:55:00 UTC|UTC;2027-01-31 23:59:59 UTC|UTC;2028-02-29 12:00:00 UTC|UTC;2027-03-01 03:00:00 UTC|America/Los_Angeles;2027-03-14 09:59:30 UTC|America/Los_Angeles;2027-11-07 08:59:30 UTC|America/Los_Angeles;2099-12-31 23:50:00 UTC|UTC}
passed=0
failed=0
IFS=';' read -ra moments <<<"$clocks"
i=0
for m in "${moments[@]}"; do
    clock=${m%%|*}
    zone=${m#*|}
    i=$((i + 1))
    echo "== clock starts at $clock, server timezone $zone"
    log="$base.$i.log"
    AUDIT_DB_TEST_CLOCK="$clock" AUDIT_DB_TEST_TIMEZONE="$zone" AUDIT_DB_TEST_DIR="$base.$i" \
        AUDIT_DB_TEST_PORT=$port pg_test/run.sh "$@" >"$log" 2>&1
    rc=$?
    grep -vE '^(ok - )' "$log" | grep -vE '^order: ' | grep -v '^sql tests: '
    summary=$(grep -E '^sql tests: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
    p=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed$/\1/p')
    f=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed$/\2/p')
    [ "$rc" = 0 ] || [ "${f:-0}" != 0 ] || f=1
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
    if [ "$rc" = 0 ]; then echo "ok - SQL tests, clock from $clock ($zone): ${p:-0} files"; else echo "not ok - SQL tests, clock from $clock ($zone): ${f:-1} of $((${p:-0} + ${f:-1})) files failed (log $log)"; fi
done
echo "any date tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
