# Shared by the cluster-level test scripts (dump_restore.sh, key_sources.sh, load.sh,
# faults.sh, integrity_cluster.sh): a throwaway cluster, ok/not ok lines and a summary line.
#   source pg_test/lib.sh; start_cluster DIR PORT [postgresql.conf line ...]
#   psql -c SQL (as postgres, -At, stderr inline); check NAME EXPECTED ACTUAL; ...;
#   finish "what tests"
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
bindir=$("$PG_CONFIG" --bindir)
[ "$PG_CONFIG" != /usr/bin/pg_config ] && export LD_LIBRARY_PATH="$("$PG_CONFIG" --libdir)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
passed=0
failed=0

start_cluster() { # dir port [conf lines]: sets $dir and $port, stops the cluster on exit
    dir=$1
    port=$2
    shift 2
    scripts/cluster.sh start "$dir" "$port" "$@" >/dev/null || exit 1
    trap 'scripts/cluster.sh stop "$dir"' EXIT
}

psql() { # psql as postgres into the cluster of start_cluster, unaligned, errors inline
    "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -q -At "$@" 2>&1
}

check() { # name, expected, actual
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1)); echo "ok - $1"
    else
        failed=$((failed + 1)); echo "not ok - $1"; diff <(echo "$2") <(echo "$3") | head -20
    fi
}

finish() { # "<what> tests: N passed, M failed"; exit status 1 on any failure
    echo "$1 tests: $passed passed, $failed failed"
    [ "$failed" = 0 ]
}
