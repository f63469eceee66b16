-- Adoption of a database built by the original Drizzle migrations 0000-0006: the
-- tables are there with data (audit_log plain, 20,000 events over 3.4 years),
-- plus Drizzle's journal; SET audit_db.adopt = 'drizzle' and CREATE EXTENSION take it
-- over without losing a row.
SET timezone = 'UTC';
CREATE DATABASE audit_adopt;
\c audit_adopt
SET timezone = 'UTC';
\getenv fixtures AUDIT_DB_FIXTURES
\set ECHO none
\i :fixtures/drizzle_0000_0006.sql
\set ECHO all
-- A database that lost indexes and columns along the way: adoption brings them back.
-- (audit_log still has all its columns: it is converted in place; error_log lost one:
-- its rows are copied.)
DROP INDEX audit_log_hash_idx;
ALTER TABLE alerts DROP COLUMN acknowledged_by;
ALTER TABLE error_log DROP COLUMN session_id;
INSERT INTO audit_log ("timestamp", action, status, principal_id)
SELECT '2023-06-15'::timestamptz + i * interval '90 minutes', 'adopt.test', 'ok', 'u' || (i % 50)
  FROM generate_series(0, 19999) i;
INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id,
                       retryable, aggregation_key, "timestamp")
SELECT 'e' || i, 'db', 'high', 'E1', 'boom', 'api', 'read', 'c' || i, 'false', 'k', '2024-01-01'::timestamptz + i * interval '1 day'
  FROM generate_series(1, 30) i;
INSERT INTO scheduled_reports (id, name, organization_id, criteria, format, schedule, delivery, created_by,
                               report_type, export)
SELECT 'r' || i, 'report', 'org', '{}', 'pdf', '{}', '{}', 'me', 'AUDIT', '{}' FROM generate_series(1, 3) i;
INSERT INTO report_executions (id, report_config_id, organization_id, scheduled_time, execution_time, status)
SELECT 'x' || i, 'r1', 'org', now(), now(), 'completed' FROM generate_series(1, 5) i;
INSERT INTO alerts (id, organization_id, severity, type, title, description, source)
VALUES ('a1', 'org', 'HIGH', 'SECURITY', 't', 'd', 's');
INSERT INTO pseudonym_mapping ("timestamp", pseudonym_id, original_id)
SELECT now(), 'p' || i, 'o' || i FROM generate_series(1, 7) i;
CREATE TEMP TABLE before AS
SELECT 'audit_log' AS t, count(*) AS n, sum(id) AS ids, max(id) AS max_id FROM audit_log
UNION ALL SELECT 'error_log', count(*), NULL, NULL FROM error_log
UNION ALL SELECT 'scheduled_reports', count(*), NULL, NULL FROM scheduled_reports
UNION ALL SELECT 'report_executions', count(*), NULL, NULL FROM report_executions
UNION ALL SELECT 'alerts', count(*), NULL, NULL FROM alerts
UNION ALL SELECT 'pseudonym_mapping', count(*), sum(id), max(id) FROM pseudonym_mapping;
-- Without the setting, CREATE EXTENSION refuses to touch existing tables.
CREATE EXTENSION audit_db;
\echo :LAST_ERROR_SQLSTATE
SET audit_db.adopt = 'flyway';
CREATE EXTENSION audit_db;
\echo :LAST_ERROR_SQLSTATE
SET audit_db.adopt = 'drizzle';
SET client_min_messages = error;
CREATE EXTENSION audit_db;
RESET client_min_messages;
RESET audit_db.adopt;
-- Every row, with its id; sequences go on after the adopted ids.
SELECT b.t, b.n, a.n AS after_n, b.ids IS NOT DISTINCT FROM a.ids AS same_ids
  FROM before b
  JOIN (SELECT 'audit_log' AS t, count(*) AS n, sum(id) AS ids FROM audit_log
        UNION ALL SELECT 'error_log', count(*), NULL FROM error_log
        UNION ALL SELECT 'scheduled_reports', count(*), NULL FROM scheduled_reports
        UNION ALL SELECT 'report_executions', count(*), NULL FROM report_executions
        UNION ALL SELECT 'alerts', count(*), NULL FROM alerts
        UNION ALL SELECT 'pseudonym_mapping', count(*), sum(id) FROM pseudonym_mapping) a USING (t)
 ORDER BY 1;
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'after adoption', 'ok')
RETURNING id = (SELECT max_id + 1 FROM before WHERE t = 'audit_log') AS id_follows;
-- The tables are the extension's now, partitioned, with every index.
SELECT count(*) AS member_tables FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db'
 WHERE d.deptype = 'e' AND d.classid = 'pg_class'::regclass;
SELECT relkind FROM pg_class WHERE oid = 'audit_log'::regclass;
-- audit_log was converted in place (audit_convert_to_partitioned, attach mode): its
-- history is the partition audit_log_legacy, up to this month; this month's events
-- moved to the new monthly partition.
SELECT partition, range_from,
       range_to = date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS to_this_month
  FROM audit_partitions('audit_log') WHERE partition = 'audit_log_legacy'::regclass;
SELECT count(*) FILTER (WHERE tableoid = 'audit_log_legacy'::regclass)
       = count(*) FILTER (WHERE "timestamp" < date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
       AS history_in_legacy
  FROM audit_log;
SELECT count(*) AS legacy_indexes FROM pg_index WHERE indrelid = 'audit_log_legacy'::regclass;
-- error_log was copied into monthly partitions from its oldest event.
SELECT min(range_from) AS first_error_partition FROM audit_partitions('error_log') WHERE NOT is_default;
SELECT parent FROM audit_partition_config ORDER BY parent::text;
SELECT count(*) AS events_in_default FROM audit_log_default;
SELECT * FROM audit_verify_schema();
SELECT count(*) AS old_tables_left FROM pg_class WHERE relname LIKE '%\_\_drizzle';
-- The Drizzle journal is imported before the install.
SELECT version, name, checksum, applied_at FROM audit_migrations() WHERE version LIKE 'drizzle:%';
SELECT version, name FROM audit_migrations() WHERE version NOT LIKE 'drizzle:%';
\c audit_regress
DROP DATABASE audit_adopt;
