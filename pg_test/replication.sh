#!/usr/bin/env bash
# Three clusters on private sockets (issue 16): a primary with the sealer worker on, a
# hot standby made by pg_basebackup streaming from it, and an archive fed by logical
# replication (audit_archive_publish / audit_archive_prepare).
# * Standby: maintenance and sealing are no-ops that say so (a pg_cron job there would
#   not fail), verification and the digest run read-only and agree with the primary,
#   hash pseudonyms compute, and what would write is refused with 25006.
# * Archive: load on the primary, the archive down for a while (catch-up), maintenance
#   on both, retention on the primary only, subject erasure, pseudonymization and
#   forgetting; then counts, row evidence, digests and verification compared on all
#   three. Prints "replication tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
start_cluster "${AUDIT_DB_PRIMARY_DIR:-/tmp/audit_db_primary}" "${AUDIT_DB_PRIMARY_PORT:-55445}" \
    "audit_db.sealer_database = 'postgres'" "wal_level = logical"
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

# ------------------------------------------------------------------- the archive
adir=${AUDIT_DB_ARCHIVE_DIR:-/tmp/audit_db_archive}
aport=${AUDIT_DB_ARCHIVE_PORT:-55447}
scripts/cluster.sh start "$adir" "$aport" >/dev/null || exit 1
trap 'as_pg "$bindir/pg_ctl" -D "$sdir/data" -m fast -w stop >/dev/null 2>&1; scripts/cluster.sh stop "$adir"; scripts/cluster.sh stop "$primary_dir"' EXIT
apsql() { "$bindir/psql" -h "$adir/sock" -p "$aport" -U postgres -X -q -At "$@" 2>&1; }
sqlstate() { sed -nE 's/^ERROR:  ([0-9A-Z]{5}).*/\1/p'; }
on_all() { # query: "primary|standby|archive" answers
    echo "$(psql -c "$1")|$(spsql -c "$1")|$(apsql -c "$1")"
}
# Until the archive has applied everything the primary wrote so far (its slot's
# confirmed position passes the primary's WAL position), and the standby has replayed it.
wait_replicas() {
    local lsn; lsn=$(psql -c "SELECT pg_current_wal_lsn()")
    for _ in $(seq 1 1200); do
        [ "$(psql -c "SELECT coalesce(bool_and(confirmed_flush_lsn >= '$lsn'), false) FROM pg_replication_slots WHERE slot_name = 'audit_db_archive'")" = t ] &&
            [ "$(spsql -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ] && return 0
        psql -c "SELECT pg_sleep(0.05)" >/dev/null
    done
    echo "# replicas did not catch up with $lsn"; return 1
}
# The rows' evidence, as a fingerprint: ids, principals, hashes, signatures, epochs.
evidence="SELECT count(*) || ':' || md5(coalesce(string_agg(id || ':' || principal_id || ':' || coalesce(row_hash, '') || ':'
                 || coalesce(signature, '') || ':' || coalesce(seal_epoch, -1), ',' ORDER BY id), ''))
            FROM audit_log WHERE \"timestamp\" >= date_trunc('month', now()) - interval '2 months'"
blocks="SELECT count(*) || ':' || max(epoch) || ':' || md5(string_agg(block_hash, ',' ORDER BY epoch)) FROM audit_seal_block"
clean="SELECT hash_mismatches || ',' || signature_mismatches || ',' || chain_breaks || ',' || coalesce(first_bad_id::text, '-')
         FROM audit_verify_integrity()"

# A month the primary will drop by retention and the archive keeps: 50 events there,
# 10 of a subject to be erased and 10 of one to be pseudonymized.
old="date_trunc('month', now()) - interval '3 months' + interval '2 days'"
psql -c "SELECT count(*) FROM audit_create_partitions('audit_log', 0, $old)" >/dev/null
psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, principal_id, action, status, details)
         SELECT $old + i * interval '1 minute', 'org-1',
                CASE i % 5 WHEN 0 THEN 'erin@example.org' WHEN 1 THEN 'carol@example.org' ELSE 'user-' || i END,
                'archive.old', 'ok', '{}' FROM generate_series(1, 50) i" >/dev/null

apsql -c "CREATE EXTENSION audit_db" >/dev/null
check "audit_archive_prepare() refuses a database with events of its own: 55000" "55000" \
    "$(psql -v VERBOSITY=sqlstate -c "SELECT audit_archive_prepare()" | sqlstate)"
check "audit_archive_publish(NULL) is refused: 22004" "22004" \
    "$(psql -v VERBOSITY=sqlstate -c "SELECT audit_archive_publish(NULL)" | sqlstate)"
apsql -c "SELECT count(*) FROM audit_create_partitions('audit_log', 0, $old)" >/dev/null
check "audit_archive_prepare() on a new database: ready" \
    "ready: now run CREATE SUBSCRIPTION audit_db_archive CONNECTION '<the primary>' PUBLICATION audit_db_archive, audit_db_archive_mappings" \
    "$(apsql -c "SELECT audit_archive_prepare()")"
check "... and the archive keeps a DEFAULT partition for periods it has no partition for" "true|audit_log_default" \
    "$(apsql -c "SELECT (SELECT default_partition FROM audit_partition_config WHERE parent = 'audit_log'::regclass) || '|' ||
                        (SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                          WHERE i.inhparent = 'audit_log'::regclass AND c.relpartbound IS NOT NULL
                            AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT')")"
check "audit_archive_publish() makes two publications" "audit_db_archive,audit_db_archive_mappings" \
    "$(psql -c "SELECT string_agg(p, ',') FROM audit_archive_publish() p")"
check "publishing again is idempotent: the same tables, inserts only for the events" \
    "audit_db_archive,audit_db_archive_mappings|audit_db_archive:audit_log,audit_db_archive:audit_seal_block,audit_db_archive:audit_subject_command,audit_db_archive_mappings:pseudonym_forgotten,audit_db_archive_mappings:pseudonym_mapping|true|false|false|true" \
    "$(psql -c "SELECT (SELECT string_agg(p, ',') FROM audit_archive_publish() p) || '|' ||
                       (SELECT string_agg(pubname || ':' || tablename, ',' ORDER BY pubname, tablename) FROM pg_publication_tables
                         WHERE pubname LIKE 'audit_db_archive%') || '|' ||
                       (SELECT pubinsert || '|' || pubupdate || '|' || pubdelete || '|' || pubviaroot FROM pg_publication WHERE pubname = 'audit_db_archive')")"
apsql -c "CREATE SUBSCRIPTION audit_db_archive
            CONNECTION 'host=$primary_dir/sock port=$primary_port user=postgres dbname=postgres'
            PUBLICATION audit_db_archive, audit_db_archive_mappings" >/dev/null
for _ in $(seq 1 1200); do
    [ "$(apsql -c "SELECT count(*) FILTER (WHERE srsubstate <> 'r') FROM pg_subscription_rel")" = 0 ] && break
    apsql -c "SELECT pg_sleep(0.05)" >/dev/null
done
wait_replicas
check "initial copy: the archive has every event of the primary, with its evidence" \
    "$(psql -c "SELECT count(*) FROM audit_log")" "$(apsql -c "SELECT count(*) FROM audit_log")"
check "sealing on the archive is a no-op that says why" "archive: blocks come from the primary" \
    "$(apsql -c "SELECT status FROM audit_seal(0)")"

# Load: 4 clients for 3 seconds while the archive applies.
printf '%s\n' "INSERT INTO audit_log (\"timestamp\", organization_id, principal_id, action, status, details)
  VALUES (now(), 'org-' || (random() * 3)::int, 'load-' || (random() * 100)::int, 'archive.load', 'ok', '{}');" >"$adir/load.sql"
"$bindir/pgbench" -n -c 4 -j 2 -T 3 -h "$primary_dir/sock" -p "$primary_port" -U postgres -f "$adir/load.sql" postgres \
    >"$adir/pgbench.log" 2>&1
check "pgbench load on the primary ran without errors" "0" "$?"

# The archive is down for a while: inserts, retention, erasure and pseudonymization
# happen meanwhile; the slot keeps them.
as_pg "$bindir/pg_ctl" -D "$adir/data" -m fast -w stop >/dev/null
psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, principal_id, action, status, details)
         SELECT now(), 'org-2', CASE i % 4 WHEN 0 THEN 'erin@example.org' WHEN 1 THEN 'carol@example.org' ELSE 'user-' || i END,
                'archive.while_down', 'ok', '{}' FROM generate_series(1, 200) i" >/dev/null
check "retention on the primary drops the old month" "1" \
    "$(psql -c "SELECT count(*) FROM audit_drop_expired_partitions('audit_log', interval '2 months')" | grep -v '^NOTICE')"
check "maintenance on the primary: nothing failed" "0" \
    "$(psql -c "SELECT count(*) FROM audit_partition_maintenance() WHERE action IN ('failed', 'overdue')")"
check "erasure on the primary: 50 events of the subject" "50|0" \
    "$(psql -c "SELECT records_deleted || '|' || compliance_records_preserved FROM audit_delete_subject('erin@example.org', false)")"
check "token pseudonymization on the primary: 50 events of the subject" "50" \
    "$(psql -c "SELECT audit_pseudonymize_subject('carol@example.org', 'token')")"
token=$(psql -c "SELECT audit_pseudonymize('carol@example.org', 'token')")
as_pg "$bindir/pg_ctl" -D "$adir/data" -l "$adir/server.log" -w -t 60 start >/dev/null
wait_replicas
check "catch-up: the archive holds the primary's events plus the 40 of the dropped month left after erasure" \
    "$(( $(psql -c "SELECT count(*) FROM audit_log") + 40 ))" "$(apsql -c "SELECT count(*) FROM audit_log")"
check "nothing duplicated on the archive" "0" "$(apsql -c "SELECT count(*) - count(DISTINCT id) FROM audit_log")"
check "every common event has the same id, principal, hash, signature and epoch on all three" \
    "$(psql -c "$evidence")|$(psql -c "$evidence")|$(psql -c "$evidence")" "$(on_all "$evidence")"
check "the erased subject appears nowhere in audit_log, also not in the month only the archive keeps" "0|0|0" \
    "$(on_all "SELECT count(*) FROM audit_log a WHERE a::text LIKE '%erin@example%'")"
check "the pseudonymized subject appears in clear nowhere" "0|0|0" \
    "$(on_all "SELECT count(*) FROM audit_log a WHERE a::text LIKE '%carol@example%'")"
check "the archive-only events of the pseudonymized subject carry the primary's token" "50|50|60" \
    "$(on_all "SELECT count(*) FROM audit_log WHERE principal_id = '$token'")"
check "the token reverses on the archive (its mapping replicated)" "carol@example.org" \
    "$(apsql -c "SELECT audit_depseudonymize('$token')")"
check "an insert made on the archive itself is refused: 55000" "55000" \
    "$(apsql -v VERBOSITY=sqlstate -c "INSERT INTO audit_log (\"timestamp\", action, status) VALUES (now(), 'local', 'ok')" | sqlstate)"
check "re-identification on the archive is recorded in its server log, not in audit_log" "1|0" \
    "$(grep -c 'audit_db archive: gdpr.data.depseudonymize by postgres' "$adir/server.log")|$(apsql -c "SELECT count(*) FROM audit_log WHERE action = 'gdpr.data.depseudonymize'")"
check "maintenance on the archive: nothing failed" "0" \
    "$(apsql -c "SELECT count(*) FROM audit_partition_maintenance() WHERE action IN ('failed', 'overdue')")"
psql -c "SELECT status FROM audit_seal(1000)" >/dev/null
wait_replicas
check "verification is clean on primary, standby and archive" "0,0,0,-|0,0,0,-|0,0,0,-" "$(on_all "$clean" | grep -v '^NOTICE')"
check "the archive and the standby hold exactly the primary's blocks (the archive sealed none of its own)" \
    "$(psql -c "$blocks")|$(psql -c "$blocks")|$(psql -c "$blocks")" "$(on_all "$blocks")"
check "the digest's head block is the same on all three" \
    "$(psql -c "SELECT audit_integrity_digest(now())->'head'")|$(psql -c "SELECT audit_integrity_digest(now())->'head'")|$(psql -c "SELECT audit_integrity_digest(now())->'head'")" \
    "$(on_all "SELECT audit_integrity_digest(now())->'head'")"

# Forgetting (crypto-shredding) reaches the archive; its own, shorter retention run
# leaves it verifying clean (the primary's retirements never arrived there).
psql -c "SELECT audit_forget_subject('carol@example.org')" >/dev/null
wait_replicas
check "forgetting on the primary removes the mapping on the archive too" "0|0|0" \
    "$(on_all "SELECT count(*) FROM pseudonym_mapping WHERE pseudonym_id = '$token'")"
check "... and brings the signed reference kept for its token to the standby and the archive" "1|1|1" \
    "$(on_all "SELECT count(*) FROM pseudonym_forgotten WHERE pseudonym_id = '$token' AND signature LIKE key_id || ':%'")"
check "... with which the archive still checks the subject's rows: nothing it could not verify" "0" \
    "$(apsql -c "$clean" 2>&1 | grep -c 'could not be fully verified')"
check "the archive's own retention drops its old month" "1" \
    "$(apsql -c "SELECT count(*) FROM audit_drop_expired_partitions('audit_log', interval '2 months')" | grep -v '^NOTICE')"
check "after it, the archive holds exactly the primary's events and verifies clean" \
    "$(psql -c "SELECT count(*) FROM audit_log")|0,0,0,-" \
    "$(apsql -c "SELECT count(*) FROM audit_log")|$(apsql -c "$clean" | grep -v '^NOTICE')"
check "the primary keeps no subject command (each is inserted and deleted in its transaction)" "0" \
    "$(psql -c "SELECT count(*) FROM audit_subject_command")"
check "no apply error on the archive, from start to end" "0" \
    "$(apsql -c "SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats WHERE subname = 'audit_db_archive'")"
finish "replication"
