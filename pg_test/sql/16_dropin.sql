-- The original application unchanged (issue 14): its statements as Drizzle ORM emits
-- them (every column of its schema.ts listed, "default" for the ones it leaves out),
-- the columns of its migration 0005, the hash it writes read back as written, its
-- partition functions, and 64-bit ids past 2^31. Runs in a database of its own.
CREATE DATABASE regress_dropin;
\c regress_dropin
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
RESET client_min_messages;
SET timezone = 'UTC';
\set VERBOSITY terse

-- ------------------------------------------------------ audit_log, as Drizzle
insert into "audit_log" ("id", "timestamp", "ttl", "principal_id", "organization_id", "action",
    "target_resource_type", "target_resource_id", "status", "outcome_description", "hash", "hash_algorithm",
    "event_version", "correlation_id", "data_classification", "retention_policy", "processing_latency",
    "archived_at", "details")
values (default, now(), default, 'alice@example.com', 'org-1', 'auth.login.success', 'Patient', 'p-1',
    'success', 'signed in', 'f2b1c6a0d2e8a6f4c1b0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8', 'SHA-256',
    '1.0', 'corr-1', 'PHI', 'standard', 12, default, '{"ip": "203.0.113.7", "sessionId": "s-1"}')
returning "id", "hash", "hash_algorithm";
-- A hash the application wrote is what it reads back; the server's evidence lives in
-- its own columns beside it.
select "id", "timestamp" is not null as has_ts, "principal_id", "hash", "hash_algorithm", "event_version",
       "data_classification", "processing_latency", "details"
  from "audit_log" where "audit_log"."principal_id" = 'alice@example.com'
 order by "audit_log"."timestamp" desc limit 10;
SELECT row_hash ~ '^[0-9a-f]{64}$' AS server_row_hash, signature LIKE 'test-1:%' AS server_signature,
       hash <> row_hash AS app_hash_untouched
  FROM audit_log WHERE principal_id = 'alice@example.com';
-- Left out by the application: the original's defaults.
insert into "audit_log" ("id", "timestamp", "ttl", "principal_id", "organization_id", "action",
    "target_resource_type", "target_resource_id", "status", "outcome_description", "hash", "hash_algorithm",
    "event_version", "correlation_id", "data_classification", "retention_policy", "processing_latency",
    "archived_at", "details")
values (default, now(), default, 'bob', default, 'data.read', default, default, 'success', default, default,
    default, default, default, default, default, default, default, default)
returning "hash", "hash_algorithm", "event_version", "data_classification", "retention_policy";

-- ---------------------------------------------------- migration 0005: run_id
insert into "scheduled_reports" ("id", "name", "description", "organization_id", "template_id", "criteria",
    "format", "schedule", "delivery", "enabled", "last_run", "next_run", "created_at", "created_by",
    "updated_at", "updated_by", "report_type", "export", "run_id")
values ('sr-1', 'weekly', default, 'org-1', default, '{}', 'pdf', '{"cron": "0 8 * * 1"}', '{}', default,
    default, default, default, 'alice', default, default, 'AUDIT', '{}', 'run-7')
returning "id", "run_id";
insert into "report_executions" ("id", "report_config_id", "organization_id", "scheduled_time", "execution_time",
    "status", "duration", "records_processed", "export_result", "delivery_attempts", "error", "created_at",
    "integrity_report", "run_id")
values ('ex-1', 'sr-1', 'org-1', now(), now(), 'completed', 1200, 42, default, default, default, default,
    default, 'run-7')
returning "id", "run_id";
update "scheduled_reports" set "run_id" = 'run-8', "updated_at" = now() where "scheduled_reports"."id" = 'sr-1'
returning "run_id";
select "report_executions"."id", "report_executions"."run_id", "scheduled_reports"."run_id" as "config_run"
  from "report_executions"
  left join "scheduled_reports" on "report_executions"."report_config_id" = "scheduled_reports"."id";
-- run_id is required on an execution, as in the original.
insert into "report_executions" ("id", "report_config_id", "organization_id", "scheduled_time", "execution_time",
    "status", "run_id")
values ('ex-2', 'sr-1', 'org-1', now(), now(), 'failed', null);

-- ----------------------------------------------------- error_log, as Drizzle
insert into "error_log" ("id", "category", "severity", "code", "message", "component", "operation",
    "correlation_id", "user_id", "session_id", "request_id", "retryable", "aggregation_key", "context",
    "troubleshooting", "timestamp", "created_at")
values ('0b6f5c2e-6a51-4d0e-9d55-3f0f8c1e2a77', 'DATABASE_ERROR', 'HIGH', 'DB001', 'timeout', 'audit-db', 'insert',
    'corr-1', default, default, default, 'true', 'db:timeout', '{}', default, now(), default)
returning "id", "category";

-- ------------------------------------------------------- duplicate ids: 23505
-- audit_log: an id given explicitly is looked up across partitions; one drawn by the
-- default is unique by construction.
\set VERBOSITY default
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (1, now() - interval '1 month', 'dup', 'ok');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'drawn', 'ok') RETURNING id AS drawn_id \gset
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (:drawn_id, now(), 'dup', 'ok');
\echo :LAST_ERROR_SQLSTATE
-- A new explicit id is taken, and the sequence moves past it.
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (5000, now(), 'explicit', 'ok') RETURNING id;
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'after explicit', 'ok') RETURNING id > 5000 AS past_it;
-- A writer's inserts draw ids too (the default needs no privilege it lacks).
SET ROLE audit_db_writer;
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'as writer', 'ok');
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (5000, now(), 'dup as writer', 'ok');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS rows_with_id_5000 FROM audit_log WHERE id = 5000;
-- A restore (a superuser session with row_security off, as pg_dump's scripts run) is
-- trusted: its ids come from a table where they were unique, and no lookup is made.
BEGIN;
SET LOCAL row_security = off;
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (5000, now(), 'restored', 'ok');
SELECT count(*) AS rows_with_id_5000_in_a_restore FROM audit_log WHERE id = 5000;
ROLLBACK;
-- Adoption's own copy (times as written, ids trusted) is not for anyone else, superuser
-- included: only CREATE EXTENSION audit_db may run it.
SELECT audit_adopt_rows('audit_log', 'audit_log', now());
\echo :LAST_ERROR_SQLSTATE
-- error_log: the application's id, unique across partitions and timestamps.
INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id, retryable,
                       aggregation_key, "timestamp")
VALUES ('0b6f5c2e-6a51-4d0e-9d55-3f0f8c1e2a77', 'DATABASE_ERROR', 'HIGH', 'DB001', 'again', 'audit-db', 'insert',
        'corr-2', 'true', 'db:timeout', now() - interval '1 month');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id, retryable,
                       aggregation_key, "timestamp")
VALUES ('9d1c0a77-0000-4000-8000-000000000002', 'DATABASE_ERROR', 'LOW', 'DB002', 'other', 'audit-db', 'insert',
        'corr-3', 'false', 'db:other', now());
UPDATE error_log SET id = '0b6f5c2e-6a51-4d0e-9d55-3f0f8c1e2a77' WHERE id = '9d1c0a77-0000-4000-8000-000000000002';
\echo :LAST_ERROR_SQLSTATE
UPDATE error_log SET message = 'kept id' WHERE id = '9d1c0a77-0000-4000-8000-000000000002' RETURNING id, message;
SELECT count(*) AS error_rows FROM error_log;
\set VERBOSITY terse

-- ------------------------------------------- the original's partition functions
-- It returns void. The install made this month and six ahead: it makes nothing more
-- until the config asks for 8 months ahead, then exactly the two after them.
SELECT pg_typeof(create_audit_log_partitions()) AS returns;
SELECT count(*) AS this_month_and_six_ahead
  FROM audit_partitions('audit_log')
 WHERE NOT is_default AND range_to > date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
UPDATE audit_partition_config SET premake = 8 WHERE parent = 'audit_log'::regclass;
SELECT create_audit_log_partitions();
SELECT count(*) AS this_month_and_eight_ahead,
       max(range_from) = date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '8 months'
         AS last_is_eighth_month
  FROM audit_partitions('audit_log')
 WHERE NOT is_default AND range_to > date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
SELECT count(*) AS created_again FROM (SELECT create_audit_log_partitions()) c, audit_partitions('audit_log');
SELECT partition_name, record_count, record_count = (SELECT count(*) FROM ONLY audit_log_default) AS counted,
       size_bytes = pg_total_relation_size('audit_log_default') AS sized, size_pretty = pg_size_pretty(size_bytes) AS pretty
  FROM get_audit_partition_stats() WHERE partition_name = 'audit_log_default';
SELECT count(*) = (SELECT count(*) FROM audit_partitions('audit_log')) AS one_row_per_partition
  FROM get_audit_partition_stats();
-- Partitions of 2020 exist; a retention of 365 days drops them (and only them).
SELECT count(*) AS made FROM audit_create_partitions('audit_log', 2, '2020-01-10');
SELECT drop_old_audit_partitions(365) AS dropped;
SELECT drop_old_audit_partitions(365) AS dropped_again;
SELECT drop_old_audit_partitions(NULL) IS NULL AS strict;
SELECT drop_old_audit_partitions(0);
SELECT count(*) AS checkpoints FROM audit_integrity_log WHERE verification_status = 'CHECKPOINT';

-- ------------------------------------------------------- ids past 2^31
SELECT pg_catalog.format_type(atttypid, atttypmod) AS id_type
  FROM pg_attribute WHERE attrelid = 'audit_log'::regclass AND attname = 'id';
SELECT seqtypid::regtype AS sequence_type, seqmax FROM pg_sequence WHERE seqrelid = 'audit_log_id_seq'::regclass;
SELECT setval('audit_log_id_seq', 2147483646);
INSERT INTO audit_log ("timestamp", action, status)
SELECT now(), 'overflow.test', 'ok' FROM generate_series(1, 3)
RETURNING id;
SELECT * FROM audit_seal(5000) \gset
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks, first_bad_id, unsealed
  FROM audit_verify_integrity();
-- A tampered row past 2^31 is named by its id.
SET session_replication_role = replica;
UPDATE audit_log SET status = 'forged' WHERE id = 2147483648;
RESET session_replication_role;
SELECT hash_mismatches, first_bad_id FROM audit_verify_integrity();
SELECT audit_log_id, verification_status FROM audit_integrity_log
 WHERE verification_status = 'FAILED' ORDER BY id DESC LIMIT 1;

\c postgres
DROP DATABASE regress_dropin;
