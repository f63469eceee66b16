#!/usr/bin/env bash
# Every test of audit_db, release checks and four tiers, then one summary line:
#   0. scripts/check_release.py (released scripts unchanged, schema change => new version,
#      and scripts/check_imports.py: no import circle in src/, README lists every module),
#   1. plain `cargo test` of the pure-Rust core (no PostgreSQL),
#   2. `cargo pgrx test` (#[pg_test] functions inside a pgrx-managed cluster),
#   3. pg_test/run.sh (pg_regress SQL tests in a throwaway cluster with pg_cron, each file
#      in a fresh database of its own) and, on the first version only,
#      pg_test/independence.sh (each file alone in a cluster of its own, then all of them
#      in reverse and in a shuffled order; issue 29),
#   4. pg_test/dump_restore.sh (pg_dump / pg_restore round trips) and
#      pg_test/key_sources.sh (key command, missing key, not preloaded),
#      pg_test/integrity_cluster.sh (pgbench inserts, then verification; no key),
#      pg_test/load.sh (8 writers on one organization for AUDIT_DB_LOAD_SECONDS=60 s against maintenance and
#      pseudonymization; nothing acknowledged is lost) and
#      pg_test/replication.sh (a pg_basebackup hot standby and a logical archive: no-ops, read-only verification;
#      issue 16),
#      pg_test/stall.sh (writers, a long reader and maintenance: no insert waits more
#      than 100 ms, retention completes after the reader ends; issue 19),
#      pg_test/faults.sh (crash, cancel, statement timeout in the middle of conversion,
#      maintenance and pseudonymization; nothing half-done, reruns complete),
#      pg_test/config_limits.sh (daily partitions, premake 1000, no DEFAULT partition,
#      writers running: no run and no insert fails; issue 25) and, on the first version
#      only, pg_test/any_date.sh (the SQL tests with the server's clock at a month's last
#      second, 29 February and a daylight-saving change; issue 29).
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

# Tiers 2-4 run once per PostgreSQL version: PG="15 16 17 18" (the default) or e.g.
# `make test PG=17`. 15 is Debian's; 16-18 are fetched by scripts/pg_binaries.sh.
versions=${PG:-15 16 17 18}
# The order and date checks rerun the SQL tier several times: on one version only.
once=${versions%% *}
declare -A pg_configs=()
for v in $versions; do
    if [ "$v" = 15 ]; then
        pg_configs[$v]=/usr/bin/pg_config
    elif pc=$(scripts/pg_binaries.sh "$v" 2>"$logdir/fetch-$v.log"); then
        pg_configs[$v]=$pc
    else
        echo "PostgreSQL $v: could not be fetched (see $logdir/fetch-$v.log); counted as one failure"
        cat "$logdir/fetch-$v.log"
        failed=$((failed + 1)); status=1
    fi
done
# cargo pgrx test needs every version in its config.
init_args=()
for v in "${!pg_configs[@]}"; do init_args+=("--pg$v" "${pg_configs[$v]}"); done
cargo pgrx init "${init_args[@]}" >"$logdir/pgrx-init.log" 2>&1 || { cat "$logdir/pgrx-init.log"; status=1; }

declare -A per_version=()
for v in $versions; do
    [ -n "${pg_configs[$v]:-}" ] || continue
    export PG_CONFIG=${pg_configs[$v]}
    before_p=$passed before_f=$failed

    echo "== PostgreSQL $v, tier 2: cargo pgrx test pg$v"
    pgdata_root=/tmp/audit_db_pgrx_test
    rm -rf "$pgdata_root"; mkdir -p "$pgdata_root"; chown postgres:postgres "$pgdata_root"
    cargo pgrx test "pg$v" --runas postgres --pgdata "$pgdata_root/data" 2>&1 | tee "$logdir/pgrx-$v.log" \
        | grep -E '^test |^test result|panicked|^error'
    if [ "${PIPESTATUS[0]}" != 0 ]; then
        status=1
        grep -q 'test result' "$logdir/pgrx-$v.log" || failed=$((failed + 1))
    fi
    count_cargo "$logdir/pgrx-$v.log"

    echo "== PostgreSQL $v, tier 3: SQL tests (pg_regress)"
    scripts/install.sh >"$logdir/install-$v.log" 2>&1 \
        || { cat "$logdir/install-$v.log"; status=1; failed=$((failed + 1)); }
    pg_test/run.sh 2>&1 | tee "$logdir/sql-$v.log" | grep -vE '^(SET|DROP DATABASE|CREATE DATABASE|ALTER DATABASE|CREATE EXTENSION)$'
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
    p=$(sed -nE 's/^sql tests: ([0-9]+) passed, ([0-9]+) failed$/\1/p' "$logdir/sql-$v.log")
    f=$(sed -nE 's/^sql tests: ([0-9]+) passed, ([0-9]+) failed$/\2/p' "$logdir/sql-$v.log")
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
    skipped=$(grep -E '^skipped: ' "$logdir/sql-$v.log" | head -1)
    if [ "$v" = "$once" ]; then
        echo "== PostgreSQL $v, tier 3: every SQL test file alone, then all in reverse and in shuffled order"
        pg_test/independence.sh >"$logdir/independence-$v.log" 2>&1
        [ "$?" = 0 ] || status=1
        grep -E '^(ok|not ok) - |^order: shuffle|^independence tests: ' "$logdir/independence-$v.log"
        p=$(sed -nE 's/^independence tests: ([0-9]+) passed, ([0-9]+) failed$/\1/p' "$logdir/independence-$v.log")
        f=$(sed -nE 's/^independence tests: ([0-9]+) passed, ([0-9]+) failed$/\2/p' "$logdir/independence-$v.log")
        passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
    fi

    echo "== PostgreSQL $v, tier 4: cluster-level tests (pg_dump / pg_restore, key sources, integrity under concurrency, load, faults, stall, standby and archive)"
    tier4=(pg_test/dump_restore.sh pg_test/key_sources.sh pg_test/integrity_cluster.sh pg_test/load.sh pg_test/faults.sh pg_test/stall.sh pg_test/replication.sh pg_test/config_limits.sh)
    [ "$v" = "$once" ] && tier4+=(pg_test/any_date.sh)
    for t in "${tier4[@]}"; do
        log="$logdir/$(basename "$t" .sh)-$v.log"
        "$t" >"$log" 2>&1
        [ "$?" = 0 ] || status=1
        grep -E '^(ok|not ok) - |^    |^figures: ' "$log"
        summary=$(grep -E '^[a-z/ ]+ tests: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
        echo "$summary"
        p=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed$/\1/p')
        f=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed$/\2/p')
        passed=$((passed + ${p:-0})); failed=$((failed + ${f:-1}))
    done
    per_version[$v]="PostgreSQL $v: $((passed - before_p)) passed, $((failed - before_f)) failed${skipped:+ ($skipped)}"
    echo "${per_version[$v]}"
done
unset PG_CONFIG

echo "logs: $logdir"
for v in $versions; do [ -n "${per_version[$v]:-}" ] && echo "${per_version[$v]}"; done
[ "$failed" -gt 0 ] && status=1
echo "audit_db: $passed passed, $failed failed"
exit "$status"
