#!/usr/bin/env bash
# Where the root key comes from: audit_db.key_command (a KMS-style program), no key
# at all, a failing command, and a server without audit_db in shared_preload_libraries.
# Needs fresh backends after each configuration change (ALTER SYSTEM + reload, or a
# restart), so it runs outside pg_regress. Prints "key source tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
start_cluster "${AUDIT_DB_KEYS_DIR:-/tmp/audit_db_keytest}" "${AUDIT_DB_KEYS_PORT:-55436}" "audit_db.key_file = ''" \
    "audit_db.key_command = 'cat ${AUDIT_DB_KEYS_DIR:-/tmp/audit_db_keytest}/audit_db.keys'"
psql -c "CREATE EXTENSION audit_db" >/dev/null
known=pseudo-35aa47d4c7a84b7a84f2ad0f3f22b8f9946671f6db9437ddb688c4a247133f4a
check "audit_db.key_command supplies the key (known answer for test-1)" "$known" \
    "$(psql -c "SELECT audit_pseudonymize('alice')")"
psql -c "ALTER SYSTEM SET audit_db.key_command = 'echo oops >&2; exit 3'" -c "SELECT pg_reload_conf()" >/dev/null
# The reload is asynchronous for running backends; a new backend reads the file at start.
out=$(psql -v VERBOSITY=verbose -c "SELECT audit_pseudonymize('alice')")
check "a failing key_command is 55000 naming the setting" "55000 audit_db.key_command failed" \
    "$(echo "$out" | sed -nE 's/^ERROR:  ([0-9A-Z]{5}): (audit_db.key_command failed).*/\1 \2/p')"
psql -c "ALTER SYSTEM SET audit_db.key_command = ''" -c "SELECT pg_reload_conf()" >/dev/null
out=$(psql -v VERBOSITY=verbose -c "SELECT audit_pseudonymize('alice')")
check "no key configured is 55000 with a HINT naming audit_db.key_file" "55000|HINT:  Set audit_db.key_file (or audit_db.key_command) in postgresql.conf and reload." \
    "$(echo "$out" | sed -nE 's/^ERROR:  ([0-9A-Z]{5}): .*/\1/p')|$(echo "$out" | grep '^HINT')"
check "without a key, hash pseudonyms are never produced by a fallback" "0" \
    "$(psql -c "SELECT count(*) FROM pseudonym_mapping")"
# Without shared_preload_libraries the settings are unknown placeholders: refused.
scripts/cluster.sh stop "$dir"
sed -i "s/^shared_preload_libraries = 'audit_db'/# &/" "$dir/data/postgresql.conf"
runuser -u postgres -- "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null 2>&1
out=$(psql -c "SELECT audit_pseudonymize('alice')")
check "not preloaded: refused, telling how to load it" \
    "ERROR:  audit_db is not loaded through shared_preload_libraries" "$(echo "$out" | head -1)"
finish "key source"
