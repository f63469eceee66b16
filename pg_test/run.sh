#!/usr/bin/env bash
# SQL-level tests: starts a throwaway cluster (pg_cron preloaded where installed), runs
# every pg_test/sql/*.sql through pg_regress against pg_test/expected/*.out, and prints
# "sql tests: N passed, M failed". Assumes the extension is installed (make install).
#   pg_test/run.sh [NAME-FILTER]   only the files whose name contains NAME-FILTER
# Every file runs in a database of its own, made fresh for it (pg_regress once per file,
# --dbname=regress_<file>, audit_db created in it): no file sees another's rows, so each
# passes alone and in any order. Cluster-wide objects (roles, databases, tablespaces)
# are each file's own business: it names them after itself and drops them at its end;
# a file that leaves one behind (or drops one it did not make) fails.
#   AUDIT_DB_TEST_ORDER=sorted (default) | reverse | shuffle
#   AUDIT_DB_TEST_SEED=N           the shuffle's seed (printed; random when unset)
#   AUDIT_DB_TEST_DIR, AUDIT_DB_TEST_PORT   the cluster's directory and port
#   AUDIT_DB_TEST_CLOCK="2027-01-31 23:59:59 UTC"  the server's wall clock starts there
#                                  and runs on (LD_PRELOAD of pg_test/clock_shift.c, built
#                                  into the cluster directory; pg_test/any_date.sh)
#   AUDIT_DB_TEST_TIMEZONE=ZONE    the server's timezone (pg_regress gives its sessions
#                                  PGTZ America/Los_Angeles, PostgreSQL 15: PST8PDT)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${AUDIT_DB_TEST_DIR:-/tmp/audit_db_sqltest}
port=${AUDIT_DB_TEST_PORT:-55432}
order=${AUDIT_DB_TEST_ORDER:-sorted}
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
export PG_CONFIG
bindir=$("$PG_CONFIG" --bindir)
regress="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
[ "$PG_CONFIG" != /usr/bin/pg_config ] && export LD_LIBRARY_PATH="$("$PG_CONFIG" --libdir)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# pg_cron exists only for Debian's PostgreSQL 15 here: without it the tests that
# schedule a job take their expected output without pg_cron (pg_regress's _1 files).
preload=audit_db
[ -f "$("$PG_CONFIG" --pkglibdir)/pg_cron.so" ] && preload=pg_cron,audit_db

tests=()
skipped=()
for f in pg_test/sql/*.sql; do
    name=$(basename "$f" .sql)
    if [ -n "${1:-}" ] && [[ "$name" != *"$1"* ]]; then continue; fi
    if [ "$name" = 18_pg_cron ] && [[ "$preload" != *pg_cron* ]]; then skipped+=("$name"); continue; fi
    tests+=("$name")
done
[ ${#tests[@]} -gt 0 ] || { echo "no test matches '${1:-}'"; exit 1; }
case "$order" in
sorted) ;;
reverse) mapfile -t tests < <(printf '%s\n' "${tests[@]}" | sort -r) ;;
shuffle)
    seed=${AUDIT_DB_TEST_SEED:-$((RANDOM * 32768 + RANDOM))}
    echo "order: shuffle, seed $seed (AUDIT_DB_TEST_ORDER=shuffle AUDIT_DB_TEST_SEED=$seed repeats it)"
    mapfile -t tests < <(printf '%s\n' "${tests[@]}" \
        | awk -v seed="$seed" 'BEGIN { srand(seed) } { printf "%.17f\t%s\n", rand(), $0 }' | sort | cut -f2)
    ;;
*) echo "AUDIT_DB_TEST_ORDER must be sorted, reverse or shuffle, not '$order'"; exit 2 ;;
esac
echo "order: ${tests[*]}"
[ ${#skipped[@]} = 0 ] || echo "skipped: ${skipped[*]} (pg_cron is not installed for PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}'))"

# A shifted clock: every process of the cluster (initdb's too) reads the wall clock
# through clock_shift.so, moved by the seconds between now and AUDIT_DB_TEST_CLOCK.
clock_env=()
if [ -n "${AUDIT_DB_TEST_CLOCK:-}" ]; then
    shim=$(mktemp -d /tmp/audit_db_clock_shift.XXXXXX)
    cc -O2 -shared -fPIC -o "$shim/clock_shift.so" pg_test/clock_shift.c -ldl
    chmod -R a+rX "$shim"
    target=$(date -u -d "$AUDIT_DB_TEST_CLOCK" +%s)
    clock_env=(LD_PRELOAD="$shim/clock_shift.so" AUDIT_DB_CLOCK_OFFSET=$((target - $(date -u +%s))))
fi
conf=()
[ -z "${AUDIT_DB_TEST_TIMEZONE:-}" ] || conf+=("timezone = '$AUDIT_DB_TEST_TIMEZONE'" "log_timezone = '$AUDIT_DB_TEST_TIMEZONE'")
# pg_cron's launcher connects to one database, the one 18_pg_cron runs in.
env "${clock_env[@]}" scripts/cluster.sh start "$dir" "$port" \
    "shared_preload_libraries = '$preload'" \
    "cron.database_name = 'regress_18_pg_cron'" \
    "cron.host = '$dir/sock'" \
    "max_locks_per_transaction = 256" "${conf[@]}"
trap 'scripts/cluster.sh stop "$dir"; rm -rf "${shim:-/nonexistent}"' EXIT
if [ -n "${AUDIT_DB_TEST_CLOCK:-}" ]; then
    "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -At -d postgres \
        -c "SELECT 'server clock: ' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC, TimeZone ' || current_setting('TimeZone')"
fi

# The cluster-wide objects a file could leave for the next one to trip over: roles
# (audit_db's own four aside: the first CREATE EXTENSION makes them, and they outlive
# it on purpose), databases (each file's own regress_<file> aside) and tablespaces.
cluster_objects() {
    "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -At -d postgres -c "
        SELECT 'role ' || rolname FROM pg_roles WHERE rolname !~ '^audit_db_(admin|gdpr|reader|writer)$'
        UNION ALL SELECT 'database ' || datname FROM pg_database WHERE datname !~ '^regress_[0-9]{2}_'
        UNION ALL SELECT 'tablespace ' || spcname FROM pg_tablespace ORDER BY 1"
}

export AUDIT_DB_FIXTURES="$root/pg_test/fixtures"
out="$dir/out"
mkdir -p "$out"
passed=0
failed=0
failures=()
before=$(cluster_objects || echo "(cluster unreachable)")
for name in "${tests[@]}"; do
    mkdir -p "$out/$name"
    set +e
    "$regress" --host="$dir/sock" --port="$port" --user=postgres --bindir="$bindir" \
        --inputdir="$root/pg_test" --outputdir="$out/$name" --dbname="regress_$name" \
        --load-extension=audit_db "$name" >"$out/$name/summary.txt" 2>&1
    rc=$?
    set -e
    ms=$(grep -oE '[0-9]+ ms' "$out/$name/summary.txt" | head -1 || true)
    after=$(cluster_objects || echo "(cluster unreachable)")
    left=$(comm -13 <(echo "$before") <(echo "$after"))
    gone=$(comm -23 <(echo "$before") <(echo "$after"))
    before=$after
    if [ "$rc" = 0 ] && [ -z "$left$gone" ]; then
        passed=$((passed + 1))
        echo "ok - $name ($ms)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "not ok - $name"
        [ -z "$left" ] || echo "$left" | sed 's/^/    left behind: /'
        [ -z "$gone" ] || echo "$gone" | sed 's/^/    dropped: /'
        if [ -f "$out/$name/regression.diffs" ]; then cat "$out/$name/regression.diffs"
        elif [ "$rc" != 0 ]; then cat "$out/$name/summary.txt"; fi
    fi
done
# A backend killed by a signal (a crash) restarts the whole cluster; the tests would
# still pass afterwards, so the server log is the witness.
if grep -q 'terminated by signal' "$dir/server.log"; then
    grep -B2 -A2 'terminated by signal' "$dir/server.log"
    failed=$((failed + 1))
    failures+=("(server log: a backend was terminated by a signal)")
fi
[ "$failed" = 0 ] || echo "failed: ${failures[*]}"
echo "sql tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
