#!/usr/bin/env bash
# pg_dump / pg_restore of a database with audit_db (reached by an upgrade, so the
# journal has two steps), in custom and plain format: the restored databases must
# have the same journal, config rows, partitions, rows, ids and sequence positions,
# and a clean audit_verify_schema(). Prints "dump/restore tests: N passed, M failed".
# Assumes the extension is installed (scripts/install.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
start_cluster "${AUDIT_DB_DUMP_DIR:-/tmp/audit_db_dumptest}" "${AUDIT_DB_DUMP_PORT:-55434}"
psql() { "$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

psql -c "CREATE DATABASE src" || exit 1
psql -d src <<'SQL' || exit 1
SET client_min_messages = warning;
CREATE EXTENSION audit_db VERSION '0.1.0';
ALTER EXTENSION audit_db UPDATE;
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 1, '2024-02-10') \g /dev/null
INSERT INTO audit_log ("timestamp", action, status)
SELECT '2024-02-01'::timestamptz + i * interval '37 minutes', 'dump.test', 'ok' FROM generate_series(0, 2999) i;
INSERT INTO audit_log ("timestamp", action, status) SELECT now(), 'now', 'ok' FROM generate_series(1, 10);
INSERT INTO audit_log ("timestamp", action, status) VALUES ('1990-01-01', 'in default', 'ok');
-- Most rows sealed into blocks, a few still open: both kinds must come back verifiable.
SELECT blocks FROM audit_seal(0) \g /dev/null
INSERT INTO audit_log ("timestamp", action, status) SELECT now(), 'unsealed', 'ok' FROM generate_series(1, 5);
INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id,
                       retryable, aggregation_key, "timestamp")
VALUES ('e1', 'db', 'high', 'E1', 'boom', 'api', 'read', 'c1', 'false', 'k1', '1980-01-01');
INSERT INTO alerts (id, organization_id, severity, type, title, description, source)
VALUES ('a1', 'org', 'HIGH', 'SECURITY', 't', 'd', 's');
INSERT INTO pseudonym_mapping ("timestamp", pseudonym_id, original_id) VALUES (now(), 'p1', 'o1'), (now(), 'p2', 'o2');
UPDATE audit_partition_config SET retention = '13 months', premake = 3 WHERE parent = 'audit_log'::regclass;
-- A DPO's own place in the subject map: dumped as data; the builtin places come with
-- the install script (dumped too, they would collide with it on restore).
CREATE TABLE app_visits (id int, patient text);
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('app_visits', 'patient', 'target');
SQL

state() { # what must survive, as text
    psql -d "$1" -At <<'SQL'
SELECT 'journal', version, name, checksum, applied_at, applied_by, execution_ms, success FROM audit_schema_migrations ORDER BY version;
SELECT 'config', parent, "interval", premake, retention, keep_table, auto_create, auto_drop, lock_timeout FROM audit_partition_config ORDER BY parent::text;
SELECT 'partitions', string_agg(partition::text || ' ' || coalesce(range_from::text, 'DEFAULT'), ', ' ORDER BY partition::text) FROM audit_partitions('audit_log');
SELECT 'audit_log', count(*), sum(id), sum(hashtext(action || "timestamp"::text)) FROM audit_log;
SELECT 'audit_log_default', count(*), sum(id) FROM audit_log_default;
SELECT 'error_log_default', count(*) FROM error_log_default;
SELECT 'alerts', count(*) FROM alerts;
SELECT 'pseudonym_mapping', count(*), sum(id) FROM pseudonym_mapping;
SELECT 'sequences', (SELECT last_value FROM audit_log_id_seq), (SELECT last_value FROM pseudonym_mapping_id_seq);
SELECT 'digest', audit_integrity_digest('infinity') - 'upto', (SELECT count(*) FROM audit_seal_block);
SELECT 'subject_map', count(*) FILTER (WHERE builtin), string_agg(relation || '.' || column_name, ',') FILTER (WHERE NOT builtin)
  FROM audit_subject_map;
SQL
}
expected=$(state src)

"$bindir/pg_dump" -h "$dir/sock" -p "$port" -U postgres -Fc -f "$dir/src.dump" src || exit 1
"$bindir/pg_dump" -h "$dir/sock" -p "$port" -U postgres -f "$dir/src.sql" src || exit 1
psql -c "CREATE DATABASE restored_custom" -c "CREATE DATABASE restored_plain" || exit 1

out=$("$bindir/pg_restore" -h "$dir/sock" -p "$port" -U postgres -d restored_custom --exit-on-error "$dir/src.dump" 2>&1)
check "pg_restore (custom format) runs without an error" "0" "$?"
echo "$out" | grep -v 'WARNING:  audit_db: restoring from a dump' | grep . && echo "(pg_restore printed the lines above)"
"$bindir/psql" -h "$dir/sock" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 -d restored_plain -f "$dir/src.sql" >/dev/null 2>"$dir/plain.err"
check "psql restore of the plain dump runs without an error" "0" "$?"

for db in restored_custom restored_plain; do
    check "$db: journal, config, partitions, rows, ids and sequences as in the source" "$expected" "$(state $db)"
    check "$db: the event trigger put the parents' indexes back: audit_finish_restore() has nothing to do" "0" "$(psql -d $db -At -c 'SELECT count(*) FROM audit_finish_restore()')"
    check "$db: audit_verify_schema() returns no rows" "0" "$(psql -d $db -At -c 'SELECT count(*) FROM audit_verify_schema()')"
    check "$db: audit_verify_integrity() finds every row and chain intact" "0|0|0" \
        "$(psql -d $db -At -c "SELECT hash_mismatches || '|' || signature_mismatches || '|' || chain_breaks FROM audit_verify_integrity()")"
    check "$db: the next id follows the source's" \
        "$(psql -d src -At -c "SELECT last_value + 1 FROM audit_log_id_seq")" \
        "$(psql -d $db -At -c "INSERT INTO audit_log (\"timestamp\", action, status) VALUES (now(), 'after restore', 'ok') RETURNING id")"
    check "$db: sealing goes on after the restore: every row sealed, verification clean" "0|0|0|0" \
        "$(psql -d $db -At -c "SELECT blocks FROM audit_seal(0)" >/dev/null; psql -d $db -At -c "SELECT hash_mismatches || '|' || signature_mismatches || '|' || chain_breaks || '|' || unsealed FROM audit_verify_integrity()")"
    check "$db: maintenance runs on the restored database" "0" \
        "$(psql -d $db -At -c "SELECT count(*) FROM audit_partition_maintenance() WHERE action IN ('failed', 'skipped')")"
done
# Without the dump's preamble (row_security = off), an explicit audit_db.restoring
# also skips the install-time rows.
psql -c "CREATE DATABASE restoring_flag" || exit 1
check "audit_db.restoring = on: no config rows, partitions or journal entry at install" "0 0 0" \
    "$(PGOPTIONS='-c audit_db.restoring=on' psql -d restoring_flag -At -c 'SET client_min_messages = error' \
        -c 'CREATE EXTENSION audit_db' \
        -c "SELECT (SELECT count(*) FROM audit_partition_config) || ' ' || (SELECT count(*) FROM audit_partitions() WHERE NOT is_default) || ' ' || (SELECT count(*) FROM audit_schema_migrations)")"
# A dump without partitions has no ALTER INDEX for the trigger: audit_finish_restore().
check "restoring_flag: the parents and DEFAULT partitions lack their 30 + 30 indexes" "60" \
    "$(psql -d restoring_flag -At -c "SELECT count(*) FROM audit_verify_schema() WHERE object_type = 'index' AND problem = 'missing'")"
check "restoring_flag: audit_finish_restore() recreates the parents' 30" "30" \
    "$(psql -d restoring_flag -At -c 'SELECT count(*) FROM audit_finish_restore()')"
check "restoring_flag: audit_verify_schema() returns no rows then" "0" \
    "$(psql -d restoring_flag -At -c 'SELECT count(*) FROM audit_verify_schema()')"

finish "dump/restore"
