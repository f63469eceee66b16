#!/usr/bin/env bash
# Every test of audit_db, release checks and four tiers, then one summary line:
#   0. scripts/check_release.py (released scripts unchanged, schema change => new version),
#   1. plain `cargo test` of the pure-Rust core (no PostgreSQL),
#   2. `cargo pgrx test` (#[pg_test] functions inside a pgrx-managed cluster),
#   3. pg_test/run.sh (pg_regress SQL tests in a throwaway cluster with pg_cron),
#   4. pg_test/dump_restore.sh (pg_dump / pg_restore round trips) and
#      pg_test/key_sources.sh (key command, missing key, not preloaded),
#      pg_test/integrity_cluster.sh (pgbench inserts, then verification; no key),
#      pg_test/load.sh (8 writers on one organization for AUDIT_DB_LOAD_SECONDS=60 s against maintenance and
#      pseudonymization; nothing acknowledged is lost) and
#      pg_test/standby.sh (a pg_basebackup hot standby: no-ops, read-only verification;
#      issue 16),
#      pg_test/stall.sh (writers, a long reader and maintenance: no insert waits more
#      than 100 ms, retention completes after the reader ends; issue 19),
#      pg_test/faults.sh (crash, cancel, statement timeout in the middle of conversion,
#      maintenance and pseudonymization; nothing half-done, reruns complete).
# Exits non-zero if any tier fails.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/prereqs.sh || exit 1

logdir=$(mktemp -d /tmp/audit_db_test_logs.XXXXXX)
passed=0
failed=0
status=0

count_cargo() { # sums "test result: ... N passed; M failed" lines of a cargo log
    local log=$1 p f
    p=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
    f=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + p)); failed=$((failed + f))
}

echo "== release checks: frozen scripts, upgrade steps, manifest"
cargo pgrx schema pg15 -o "$logdir/generated.sql" >"$logdir/schema.log" 2>&1 || { cat "$logdir/schema.log"; status=1; }
python3 scripts/check_release.py "$logdir/generated.sql" 2>&1 | tee "$logdir/release.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
p=$(sed -nE 's/^release checks: ([0-9]+) passed, ([0-9]+) failed$/\1/p' "$logdir/release.log")
f=$(sed -nE 's/^release checks: ([0-9]+) passed, ([0-9]+) failed$/\2/p' "$logdir/release.log")
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))

echo "== tier 1: cargo test -p audit_db_core (unit tests; property tests at PROPTEST_CASES=${PROPTEST_CASES:=2000} cases each)"
export PROPTEST_CASES
cargo test -p audit_db_core 2>&1 | tee "$logdir/core.log" | grep -E '^test result|FAILED|panicked'
[ "${PIPESTATUS[0]}" = 0 ] || { status=1; grep -q failed "$logdir/core.log" || failed=$((failed + 1)); }
count_cargo "$logdir/core.log"

echo "== tier 2: cargo pgrx test pg15"
pgdata_root=/tmp/audit_db_pgrx_test
rm -rf "$pgdata_root"; mkdir -p "$pgdata_root"; chown postgres:postgres "$pgdata_root"
cargo pgrx test pg15 --runas postgres --pgdata "$pgdata_root/data" 2>&1 | tee "$logdir/pgrx.log" \
    | grep -E '^test |^test result|panicked|^error'
if [ "${PIPESTATUS[0]}" != 0 ]; then
    status=1
    grep -q 'test result' "$logdir/pgrx.log" || failed=$((failed + 1))
fi
count_cargo "$logdir/pgrx.log"

echo "== tier 3: SQL tests (pg_regress)"
scripts/install.sh >"$logdir/install.log" 2>&1 \
    || { cat "$logdir/install.log"; status=1; failed=$((failed + 1)); }
pg_test/run.sh 2>&1 | tee "$logdir/sql.log" | grep -vE '^(SET|DROP DATABASE|CREATE DATABASE|ALTER DATABASE|CREATE EXTENSION)$'
[ "${PIPESTATUS[0]}" = 0 ] || status=1
p=$(sed -nE 's/^sql tests: ([0-9]+) passed, ([0-9]+) failed$/\1/p' "$logdir/sql.log")
f=$(sed -nE 's/^sql tests: ([0-9]+) passed, ([0-9]+) failed$/\2/p' "$logdir/sql.log")
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))

echo "== tier 4: cluster-level tests (pg_dump / pg_restore, key sources, integrity under concurrency, load, faults)"
for t in pg_test/dump_restore.sh pg_test/key_sources.sh pg_test/integrity_cluster.sh pg_test/load.sh pg_test/faults.sh pg_test/stall.sh pg_test/standby.sh; do
    log="$logdir/$(basename "$t" .sh).log"
    "$t" >"$log" 2>&1
    [ "$?" = 0 ] || status=1
    grep -E '^(ok|not ok) - |^    |^figures: ' "$log"
    summary=$(grep -E '^[a-z/ ]+ tests: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
    echo "$summary"
    p=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed$/\1/p')
    f=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed$/\2/p')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
done

[ "$failed" -gt 0 ] && status=1
echo "logs: $logdir"
echo "audit_db: $passed passed, $failed failed"
exit "$status"
