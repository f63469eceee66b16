#!/usr/bin/env bash
# A real hot standby (issue 16, part 1): a primary with the sealer worker on, a
# standby made by pg_basebackup streaming from it. On the standby, maintenance and
# sealing are no-ops that say so (a pg_cron job there would not fail), verification
# and the digest run read-only and agree with the primary, hash pseudonyms compute,
# and what would write is refused with 25006. Prints "standby tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
start_cluster "${AUDIT_DB_PRIMARY_DIR:-/tmp/audit_db_primary}" "${AUDIT_DB_PRIMARY_PORT:-55445}" \
    "audit_db.sealer_database = 'postgres'" "wal_level = replica"
psql -c "CREATE EXTENSION audit_db" >/dev/null
primary_dir=$dir primary_port=$port
sdir=${AUDIT_DB_STANDBY_DIR:-/tmp/audit_db_standby}
sport=${AUDIT_DB_STANDBY_PORT:-55446}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
"$bindir/pg_ctl" -D "$sdir/data" -m immediate stop >/dev/null 2>&1
rm -rf "$sdir"; mkdir -p "$sdir/sock"; [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$sdir"
as_pg "$bindir/pg_basebackup" -h "$primary_dir/sock" -p "$primary_port" -U postgres -D "$sdir/data" -R -X stream \
    >"$sdir/basebackup.log" 2>&1
check "pg_basebackup made a standby" "0" "$?"
printf '%s\n' "port = $sport" "unix_socket_directories = '$sdir/sock'" | as_pg tee -a "$sdir/data/postgresql.conf" >/dev/null
as_pg "$bindir/pg_ctl" -D "$sdir/data" -l "$sdir/server.log" -w -t 60 start >/dev/null
trap 'as_pg "$bindir/pg_ctl" -D "$sdir/data" -m fast -w stop >/dev/null 2>&1; scripts/cluster.sh stop "$primary_dir"' EXIT
spsql() { "$bindir/psql" -h "$sdir/sock" -p "$sport" -U postgres -X -q -At "$@" 2>&1; }
check "the standby is in recovery" "t" "$(spsql -c "SELECT pg_is_in_recovery()")"

# Events on the primary, sealed there; the standby replays them.
psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, principal_id, action, status, details)
         SELECT now(), 'org-1', 'user-' || (i % 7), 'standby.event', 'ok', '{\"email\": \"a@example.org\"}'
           FROM generate_series(1, 500) i" >/dev/null
psql -c "SELECT status FROM audit_seal(5000)" >/dev/null
lsn=$(psql -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 600); do
    [ "$(spsql -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ] && break
    spsql -c "SELECT pg_sleep(0.01)" >/dev/null
done
check "the standby replayed the 500 events" "500" "$(spsql -c "SELECT count(*) FROM audit_log WHERE action = 'standby.event'")"

check "maintenance on the standby: one 'skipped' row saying why, no error" \
    "skipped|server is a hot standby; maintenance runs on the primary only" \
    "$(spsql -c "SELECT action || '|' || detail FROM audit_partition_maintenance()")"
check "sealing on the standby: nothing to do, no error" "standby: nothing to do" \
    "$(spsql -c "SELECT status FROM audit_seal(0)")"
logged_before=$(spsql -c "SELECT count(*) FROM audit_integrity_log")
check "verification on the standby: every row checked, nothing wrong" "true|0|0|0||0" \
    "$(spsql -c "SELECT (checked >= 500) || '|' || hash_mismatches || '|' || signature_mismatches || '|' || chain_breaks || '|' || coalesce(first_bad_id::text, '') || '|' || unsealed FROM audit_verify_integrity()" | grep -v '^NOTICE')"
check "the standby's run is not recorded there (read-only)" "$logged_before" "$(spsql -c "SELECT count(*) FROM audit_integrity_log")"
check "the digest on the standby equals the primary's" \
    "$(psql -c "SELECT audit_integrity_digest(now())->'head'")" \
    "$(spsql -c "SELECT audit_integrity_digest(now())->'head'")"
check "hash pseudonyms compute on the standby, as on the primary" \
    "$(psql -c "SELECT audit_pseudonymize_hash('alice') || audit_pseudonymize('alice')")" \
    "$(spsql -c "SELECT audit_pseudonymize_hash('alice') || audit_pseudonymize('alice')")"
check "a token pseudonym (it writes a mapping) is refused on the standby with 25006" "25006" \
    "$(spsql -v VERBOSITY=sqlstate -c "SELECT audit_pseudonymize('carol', 'token')" | sed -nE 's/^ERROR:  ([0-9A-Z]{5}).*/\1/p')"
check "partition statistics read on the standby" "t" \
    "$(spsql -c "SELECT count(*) >= 7 FROM get_audit_partition_stats()")"
# The read-only functions a DBA runs against a replica.
check "partitions, analysis, schema drift, journal and version read on the standby" "true|true|0|true|true" \
    "$(spsql -c "SELECT (SELECT count(*) > 0 FROM audit_partitions()) || '|' ||
                        (SELECT total_partitions > 0 FROM audit_analyze_partitions()) || '|' ||
                        (SELECT count(*) FROM audit_verify_schema()) || '|' ||
                        (SELECT count(*) > 0 FROM audit_migrations()) || '|' ||
                        (SELECT audit_schema_version() IS NOT NULL)")"
check "no crash and no complaint of the sealer worker in the standby's log (it idles there)" "0" \
    "$(grep -cE 'terminated by signal|audit_db sealer' "$sdir/server.log")"
finish "standby"
