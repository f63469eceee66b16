#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for the demo, the SQL-level tests and benchmarks.
#   scripts/cluster.sh start DIR PORT [postgresql.conf line ...]
#   scripts/cluster.sh stop DIR
# Runs the server as the OS user `postgres` when invoked as root (initdb refuses root).
# The socket lives in DIR/sock; connect with: psql -h DIR/sock -p PORT -U postgres
set -euo pipefail

# PG_CONFIG picks the PostgreSQL (default Debian's 15; scripts/pg_binaries.sh fetches 16-18).
PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
PG_BIN="$("$PG_CONFIG" --bindir 2>/dev/null || true)"
# A relocatable build's programs and modules (dblink) must load its own libpq.
[ "$PG_CONFIG" != /usr/bin/pg_config ] && export LD_LIBRARY_PATH="$("$PG_CONFIG" --libdir)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -x "$PG_BIN/initdb" ] || PG_BIN=/usr/lib/postgresql/15/bin

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd="${1:?usage: cluster.sh start|stop DIR [PORT conf...]}"
dir="${2:?cluster directory}"
case "$cmd" in
start)
    port="${3:?port}"
    shift 3
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    mkdir -p "$dir/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; exit 1; }
    # A throwaway root key for audit_db (test key, never used for real data), readable
    # by the server's OS user only, as audit_db requires.
    printf '%s\n' "# audit_db test key file (throwaway clusters only)" \
        "test-1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" > "$dir/audit_db.keys"
    chmod 600 "$dir/audit_db.keys"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/audit_db.keys"
    {
        echo "shared_preload_libraries = 'audit_db'"
        echo "audit_db.key_file = '$dir/audit_db.keys'"
        echo "port = $port"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir/sock'"
        echo "fsync = off"
        echo "max_connections = 60"
        for line in "$@"; do echo "$line"; done
    } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
    as_pg env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log"; exit 1; }
    ;;
stop)
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
