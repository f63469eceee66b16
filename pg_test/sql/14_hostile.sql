-- Hostile input: every public function of audit_db called with NULLs, empty strings,
-- 1 MB strings, invalid UTF-8 (through bytea casts), identifiers that need quoting,
-- regclass values of the wrong kind, and zero or negative intervals. Each call gives a
-- SQLSTATE-coded error or a correct result; errors change nothing (hostile_unchanged()
-- compares a fingerprint of every table, partition and chain head with the one taken
-- before). Run as superuser, so only the extension's own checks stand in the way.
-- pg_test/run.sh fails if the server log shows a backend terminated by a signal.
-- Runs in a database of its own, so it depends on no other test file.
CREATE DATABASE regress_hostile;
\c regress_hostile
\set VERBOSITY sqlstate
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
SET timezone = 'UTC';

-- A fingerprint of everything a call could change.
CREATE FUNCTION hostile_state() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname)
           FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace),
        (SELECT count(*) || '/' || coalesce(max(id), 0) || '/' || count(*) FILTER (WHERE details ? 'pseudonymized') FROM audit_log),
        (SELECT count(*) FROM error_log),
        (SELECT count(*) FROM pseudonym_mapping),
        (SELECT string_agg(chain_key || '=' || seq || '/' || hash, ',' ORDER BY chain_key) FROM audit_chain_head),
        (SELECT count(*) FROM audit_chain_retired),
        (SELECT count(*) FROM audit_seal_retired),
        (SELECT string_agg(concat_ws(':', parent, "interval", premake, retention, keep_table), ',' ORDER BY parent::text)
           FROM audit_partition_config),
        (SELECT count(*) FROM audit_retention_policy),
        (SELECT count(*) FROM audit_schema_migrations)))
$$;
CREATE TEMP TABLE hostile_snapshot (state text);
CREATE FUNCTION hostile_snap() RETURNS void LANGUAGE sql AS
    $$ DELETE FROM hostile_snapshot; INSERT INTO hostile_snapshot SELECT hostile_state() $$;
CREATE FUNCTION hostile_unchanged() RETURNS boolean LANGUAGE sql AS
    $$ SELECT state = hostile_state() FROM hostile_snapshot $$;

-- Relations of every wrong kind, and names that need quoting.
CREATE VIEW hostile_view AS SELECT now() AS "timestamp";
CREATE SEQUENCE hostile_seq;
CREATE TABLE hostile_plain ("timestamp" timestamptz NOT NULL, v text);
CREATE TABLE hostile_by_list (k text, "timestamp" timestamptz) PARTITION BY LIST (k);
CREATE TYPE hostile_type AS (a int);
CREATE TABLE x (survivor int);
INSERT INTO x VALUES (1);
INSERT INTO audit_log ("timestamp", organization_id, principal_id, action, status)
VALUES ('2026-01-15', 'org-h', 'hostile-subject', 'hostile.seed', 'ok');
SELECT hostile_snap();

-- ---------------------------------------------------------- NULL arguments
SELECT audit_create_partitions(NULL);
SELECT audit_create_partitions('audit_log', 1, NULL);
SELECT audit_drop_expired_partitions(NULL);
SELECT audit_drop_expired_partitions('audit_log', '1 year', NULL);
SELECT audit_drop_expired_partitions('audit_log', '1000 years', false, NULL) AS null_reference_is_now;
SELECT audit_partition_maintenance(NULL);
SELECT audit_analyze_partitions(NULL);
SELECT total_partitions, total_partitions = (SELECT count(*) FROM audit_partitions('audit_log')) AS all_partitions
  FROM audit_analyze_partitions('audit_log', NULL);
SELECT total_partitions, total_partitions = (SELECT count(*) FROM audit_partitions('audit_log')) AS all_partitions
  FROM audit_analyze_partitions('audit_log', 1, NULL);
SELECT audit_convert_to_partitioned(NULL);
SELECT audit_convert_to_partitioned('hostile_plain', NULL);
SELECT audit_convert_to_partitioned('hostile_plain', 'copy', NULL);
SELECT audit_pseudonymize(NULL) IS NULL AS null_in_null_out;
SELECT audit_pseudonymize_hash(NULL) IS NULL AS null_in_null_out;
SELECT audit_pseudonymize_batch(ARRAY[NULL, NULL]::text[], 'token') AS nulls_stay_null;
SELECT audit_pseudonymize_batch(ARRAY['a'], NULL);
SELECT audit_pseudonymize('a', NULL);
SELECT audit_depseudonymize(NULL) IS NULL AS null_in_null_out;
SELECT audit_pseudonymize_subject(NULL);
SELECT audit_pseudonymize_subject('hostile-subject', NULL);
SELECT audit_export_subject(NULL);
SELECT audit_forget_subject(NULL);
SELECT audit_delete_subject(NULL);
SELECT audit_delete_subject('hostile-subject', NULL);
SELECT audit_rotate_pseudonym_key(NULL);
SELECT audit_verify_integrity(NULL);
SELECT audit_verify_integrity('-infinity', NULL);
SELECT audit_integrity_digest(NULL);
SELECT count(*) AS rows FROM audit_partitions(NULL);
SELECT audit_seal(NULL);
SELECT audit_seal(-1);
SELECT audit_seal(600001);
SELECT hostile_unchanged() AS unchanged_after_nulls;

-- ---------------------------------------------------------- empty strings
SELECT audit_convert_to_partitioned('hostile_plain', '');
SELECT audit_convert_to_partitioned('hostile_plain', 'copy', '');
SELECT audit_pseudonymize('a', '');
SELECT audit_pseudonymize('', 'hash') ~ '^pseudo-[0-9a-f]{64}$' AS empty_hashes;
SELECT audit_depseudonymize('');
SELECT audit_pseudonymize_subject('');
SELECT audit_pseudonymize_subject('hostile-subject', '');
SELECT audit_export_subject('');
SELECT audit_forget_subject('');
SELECT audit_delete_subject('');
SELECT audit_rotate_pseudonym_key('');
SELECT ''::regclass;
SELECT hostile_unchanged() AS unchanged_after_empty_strings;

-- ---------------------------------------------------------- 1 MB strings
SELECT audit_convert_to_partitioned('hostile_plain', repeat('x', 1048576));
SELECT audit_convert_to_partitioned('hostile_plain', 'copy', repeat('x', 1048576));
SELECT audit_pseudonymize('a', repeat('x', 1048576));
SELECT audit_pseudonymize_batch(ARRAY['a'], repeat('x', 1048576));
SELECT length(audit_pseudonymize_hash(repeat('x', 1048576))) AS hash_length;
SELECT audit_depseudonymize(repeat('x', 1048576));
SELECT audit_depseudonymize('pseudo-' || repeat('0', 1048576));
SELECT audit_depseudonymize('pseudo-' || repeat('0', 64));
SELECT audit_pseudonymize_subject('hostile-subject', repeat('x', 1048576));
SELECT audit_rotate_pseudonym_key(repeat('x', 1048576));
SELECT audit_create_partitions(repeat('x', 1048576)::regclass);
SELECT hostile_unchanged() AS unchanged_after_huge_strings;
-- A 1 MB principal_id names nobody (the column holds 255 characters): correct empty
-- results. Each call is audited under the subject's 71-character hash pseudonym,
-- never the 1 MB value.
SELECT audit_pseudonymize_subject(repeat('x', 1048576));
-- The export of that nobody holds exactly the record of the call made about them.
SELECT e->>'table' AS "table", e->>'role' AS role, e->'row'->>'action' AS action
  FROM jsonb_array_elements(audit_export_subject(repeat('x', 1048576))) e;
SELECT audit_forget_subject(repeat('x', 1048576));
SELECT audit_delete_subject(repeat('x', 1048576));
SELECT audit_pseudonymize(repeat('x', 1048576), 'hash') AS huge_subject \gset
SELECT action, count(*) AS events, max(length(target_resource_id)) AS target_length
  FROM audit_log WHERE target_resource_id = :'huge_subject'
 GROUP BY action ORDER BY action;
SELECT hostile_snap();
-- A 1 MB original is a valid value to pseudonymize: hash and token are fixed-size,
-- encryption round-trips it (and stores one mapping row, so take a new fingerprint).
SELECT length(audit_pseudonymize(repeat('x', 1048576), 'hash')) AS hash_length,
       length(audit_pseudonymize(repeat('x', 1048576), 'token')) AS token_length,
       audit_depseudonymize(audit_pseudonymize(repeat('é', 524288), 'encryption')) = repeat('é', 524288) AS one_mb_round_trip;
SELECT audit_pseudonymize_batch(ARRAY[repeat('x', 1048576), repeat('é', 524288)], 'encryption')
       = ARRAY[audit_pseudonymize(repeat('x', 1048576), 'encryption'), audit_pseudonymize(repeat('é', 524288), 'encryption')] AS batch_of_1mb_values;
SELECT count(*) AS mapping_rows FROM pseudonym_mapping;
SELECT hostile_snap();

-- ---------------------------------------------------------- invalid UTF-8
-- The bytea-to-text conversion rejects it (22021) before any audit_db function runs.
SELECT audit_pseudonymize(convert_from('\xff'::bytea, 'UTF8'));
SELECT audit_pseudonymize_hash(convert_from('\xff'::bytea, 'UTF8'));
SELECT audit_pseudonymize_batch(ARRAY[convert_from('\xc3'::bytea, 'UTF8')], 'token');
SELECT audit_pseudonymize(convert_from('\xc3'::bytea, 'UTF8'), 'encryption');
SELECT audit_depseudonymize(convert_from('\x70736575646f2dfe'::bytea, 'UTF8'));
SELECT audit_pseudonymize_subject(convert_from('\xeda080'::bytea, 'UTF8'));
SELECT audit_export_subject(convert_from('\x00'::bytea, 'UTF8'));
SELECT audit_convert_to_partitioned('hostile_plain', convert_from('\xff'::bytea, 'UTF8'));
-- Bytes that are valid UTF-8 but not a pseudonym audit_db made: unknown or rejected.
SELECT audit_depseudonymize('pseudo-' || encode('\xff00fe'::bytea, 'escape'));
SELECT audit_depseudonymize('pseudo-' || encode(sha256('x'), 'hex'));
SELECT audit_depseudonymize(encode(decode(repeat('ff', 100), 'hex'), 'base64'));
SELECT hostile_unchanged() AS unchanged_after_invalid_utf8;

-- ---------------------------------------------------------- regclass of the wrong kind
SELECT audit_create_partitions('hostile_view');
SELECT audit_create_partitions('hostile_seq');
SELECT audit_create_partitions('audit_log_timestamp_idx');
SELECT audit_create_partitions('hostile_plain');
SELECT audit_create_partitions('hostile_by_list');
SELECT audit_create_partitions('hostile_type'::regtype::oid::regclass);
SELECT audit_create_partitions(0::regclass);
SELECT audit_create_partitions(4294967295::oid::regclass);
SELECT audit_drop_expired_partitions('hostile_view', '1 year');
SELECT audit_drop_expired_partitions('hostile_seq', '1 year');
SELECT audit_drop_expired_partitions('audit_log_default', '1 year');
SELECT audit_drop_expired_partitions('hostile_plain', '1 year');
SELECT audit_analyze_partitions('hostile_view');
SELECT audit_analyze_partitions('hostile_seq');
SELECT audit_analyze_partitions('hostile_plain');
SELECT audit_convert_to_partitioned('hostile_view');
SELECT audit_convert_to_partitioned('hostile_seq');
SELECT audit_convert_to_partitioned('audit_log_timestamp_idx');
SELECT audit_convert_to_partitioned('audit_log_default');
SELECT audit_convert_to_partitioned('hostile_by_list');
SELECT audit_convert_to_partitioned('pg_class');
SELECT audit_convert_to_partitioned(0::regclass);
SELECT count(*) AS rows FROM audit_partitions('hostile_view');
SELECT count(*) AS rows FROM audit_partitions('hostile_seq');
SELECT hostile_unchanged() AS unchanged_after_wrong_kinds;

-- ---------------------------------------------------------- zero, negative, absurd intervals
SELECT audit_drop_expired_partitions('audit_log', '0');
SELECT audit_drop_expired_partitions('audit_log', '-1 month');
SELECT audit_drop_expired_partitions('audit_log', '1 month -31 days');
SELECT audit_drop_expired_partitions('audit_log', '1 year', false, 'infinity');
SELECT audit_drop_expired_partitions('audit_log', '1 year', false, '-infinity');
SELECT audit_drop_expired_partitions('audit_log', '178000000 years');
UPDATE audit_partition_config SET retention = '0' WHERE parent = 'audit_log'::regclass;
UPDATE audit_partition_config SET retention = '-1 day' WHERE parent = 'audit_log'::regclass;
UPDATE audit_partition_config SET premake = -1 WHERE parent = 'audit_log'::regclass;
UPDATE audit_partition_config SET premake = 1001 WHERE parent = 'audit_log'::regclass;
UPDATE audit_partition_config SET "interval" = 'hourly' WHERE parent = 'audit_log'::regclass;
UPDATE audit_partition_config SET lock_timeout = '0' WHERE parent = 'audit_log'::regclass;
INSERT INTO audit_partition_config (parent) VALUES ('hostile_view');
INSERT INTO audit_partition_config (parent) VALUES ('hostile_plain');
SELECT audit_create_partitions('audit_log', -1);
SELECT audit_create_partitions('audit_log', 1001);
SELECT audit_create_partitions('audit_log', 1, 'infinity');
SELECT audit_create_partitions('audit_log', 1, '-infinity');
SELECT audit_create_partitions('audit_log', 1, '0001-01-01 BC');
SELECT audit_partition_maintenance('infinity');
SELECT audit_partition_maintenance('-infinity');
SELECT audit_analyze_partitions('audit_log', -1);
SELECT total_partitions, total_partitions = (SELECT count(*) FROM audit_partitions('audit_log')) AS all_partitions
  FROM audit_analyze_partitions('audit_log', 1, 'infinity');
SELECT audit_verify_integrity('infinity', '-infinity');
SELECT audit_integrity_digest('-infinity') ->> 'rows' AS digest_rows_before_time;
SELECT hostile_unchanged() AS unchanged_after_bad_intervals;

-- ---------------------------------------------------------- identifiers needing quotes
-- A parent named with a space and capitals, and one named like an injection: the
-- partitions are created with correctly quoted names and table x survives.
CREATE TABLE "Audit Log" ("timestamp" timestamptz NOT NULL, v text) PARTITION BY RANGE ("timestamp");
CREATE TABLE "audit_log; DROP TABLE x" ("timestamp" timestamptz NOT NULL) PARTITION BY RANGE ("timestamp");
SELECT * FROM audit_create_partitions('"Audit Log"', 1, '2020-01-15');
SELECT * FROM audit_create_partitions('"audit_log; DROP TABLE x"', 1, '2020-01-15');
SELECT partition, range_from, range_to FROM audit_partitions('"audit_log; DROP TABLE x"') ORDER BY range_from;
SELECT * FROM audit_drop_expired_partitions('"audit_log; DROP TABLE x"', '1 month', false, '2020-04-01');
SELECT count(*) AS x_survives FROM x;
-- A table to convert whose name and key column both need quoting. Its 40 days start on
-- the 2nd of the month four years from now (UTC), so that they fill two months on any date.
CREATE TABLE "Legacy Events; DROP TABLE x" (id int PRIMARY KEY, "Event Time" timestamptz NOT NULL, note text);
INSERT INTO "Legacy Events; DROP TABLE x"
SELECT i, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '4 years' + i * interval '1 day', 'n' || i
  FROM generate_series(1, 40) i;
SELECT audit_convert_to_partitioned('"Legacy Events; DROP TABLE x"', 'copy', 'Event Time; DROP TABLE x');
SELECT audit_convert_to_partitioned('"Legacy Events; DROP TABLE x"', 'copy', 'Event Time');
SELECT c.relkind, count(*) AS rows, sum(id) AS id_sum
  FROM pg_class c, "Legacy Events; DROP TABLE x" l
 WHERE c.oid = '"Legacy Events; DROP TABLE x"'::regclass GROUP BY c.relkind;
SELECT count(*) AS partitions FROM audit_partitions('"Legacy Events; DROP TABLE x"') WHERE NOT is_default;
SELECT count(*) AS x_survives FROM x;
DROP TABLE "Audit Log", "audit_log; DROP TABLE x", "Legacy Events; DROP TABLE x" CASCADE;
DROP TABLE IF EXISTS "Legacy Events; DROP TABLE x_legacy";
-- (conversion configured the converted table for maintenance; it is gone now)
DELETE FROM audit_partition_config WHERE NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = parent::oid);

-- ---------------------------------------------------------- values stored in rows
SELECT hostile_snap();
-- Over-long values for bounded columns are rejected whole (22001): no row, no chain link.
INSERT INTO audit_log ("timestamp", organization_id, action, status)
VALUES (now(), repeat('o', 1048576), 'hostile.insert', 'ok');
INSERT INTO audit_log ("timestamp", action, status)
VALUES (now(), 'hostile.insert', 'ok'), (now(), repeat('a', 256), 'ok');
INSERT INTO audit_log ("timestamp", action, status) VALUES ('infinity', 'hostile.insert', 'ok');
INSERT INTO audit_log ("timestamp", action, status) VALUES ('-infinity', 'hostile.insert', 'ok');
INSERT INTO audit_log ("timestamp", action, status) VALUES (NULL, 'hostile.insert', 'ok');
SELECT hostile_unchanged() AS unchanged_after_rejected_rows;
-- A 1 MB details document and a name that needs quoting are ordinary data: stored,
-- hashed, chained and verified like any other event.
INSERT INTO audit_log ("timestamp", organization_id, principal_id, action, status, details)
VALUES (now(), 'org"; DROP TABLE x; --', 'hostile-subject', 'hostile.big', 'ok',
        jsonb_build_object('blob', repeat('x', 1048576), 'quote', E'\'";\\'));
SELECT length(details ->> 'blob') AS blob_length, row_hash ~ '^[0-9a-f]{64}$' AS hashed, seal_epoch > 0 AS tagged
  FROM audit_log WHERE action = 'hostile.big';
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();
-- Retention policies with hostile values: zero or negative days are refused before
-- any row is touched (they would archive and delete every row); an absurd number of
-- days keeps everything.
INSERT INTO audit_retention_policy (policy_name, retention_days, data_classification, delete_after_days)
VALUES ('''; DROP TABLE x; --', 2147483647, 'INTERNAL', 2147483647);
SELECT * FROM audit_apply_retention_policies();
SELECT count(*) AS hostile_rows_kept FROM audit_log WHERE action LIKE 'hostile.%';
DELETE FROM audit_retention_policy;
SELECT hostile_snap();
INSERT INTO audit_retention_policy (policy_name, retention_days, data_classification, delete_after_days)
VALUES ('negative', -1, 'INTERNAL', -1);
SELECT * FROM audit_apply_retention_policies();
UPDATE audit_retention_policy SET retention_days = 0, delete_after_days = NULL WHERE policy_name = 'negative';
SELECT * FROM audit_apply_retention_policies();
UPDATE audit_retention_policy SET retention_days = 30, archive_after_days = -5 WHERE policy_name = 'negative';
SELECT * FROM audit_apply_retention_policies();
DELETE FROM audit_retention_policy;
SELECT hostile_unchanged() AS unchanged_after_refused_policies;
SELECT count(*) AS hostile_rows_kept FROM audit_log WHERE action LIKE 'hostile.%';
-- The subject functions with that subject: correct results.
SELECT audit_pseudonymize_subject('hostile-subject', 'encryption') AS pseudonymized;
SELECT count(*) AS still_named FROM audit_log WHERE principal_id = 'hostile-subject';
SELECT count(*) AS x_survives FROM x;
SELECT count(*) AS problems FROM audit_verify_schema();
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();

DROP VIEW hostile_view;
DROP SEQUENCE hostile_seq;
DROP TABLE hostile_plain, hostile_by_list, x;
DROP TYPE hostile_type;
DROP FUNCTION hostile_state(), hostile_snap(), hostile_unchanged();
RESET client_min_messages;

\c postgres
DROP DATABASE regress_hostile;
