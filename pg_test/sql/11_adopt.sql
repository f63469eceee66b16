-- Adoption of a database built by the original Drizzle migrations 0000-0006: the
-- tables are there with data (audit_log plain, 20,000 events over 3.4 years),
-- plus Drizzle's journal; SET audit_db.adopt = 'drizzle' and CREATE EXTENSION take it
-- over without losing a row.
SET timezone = 'UTC';
-- No CONTEXT lines: PostgreSQL 18 adds the extension script's statement to them.
\set SHOW_CONTEXT never
CREATE DATABASE audit_adopt;
\c audit_adopt
SET timezone = 'UTC';
\getenv fixtures AUDIT_DB_FIXTURES
\set ECHO none
\i :fixtures/drizzle_0000_0006.sql
\set ECHO all
-- Every time below is relative to the start of the current UTC month (the server's
-- clock), so that the same rows fall in the same partitions on any date: the history
-- spans the 1,251 days before this month, and only the 'adopt.recent' events are in it.
SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1251 days' AS base \gset
-- A database that lost indexes and columns along the way: adoption brings them back.
-- (audit_log still has all its columns: it is converted in place; error_log lost one:
-- its rows are copied.)
DROP INDEX audit_log_hash_idx;
ALTER TABLE alerts DROP COLUMN acknowledged_by;
ALTER TABLE error_log DROP COLUMN session_id;
-- Events as the original application wrote them, with its own SHA-256 in hash (the
-- original's algorithm, written here in SQL: eight fields, sorted keys, key:JSON
-- joined by '|', the time as toISOString()). Every tenth was pseudonymized by the
-- application after hashing; three are edited afterwards (tampering).
CREATE FUNCTION pg_temp.app_hash(ts timestamptz, action text, status text, principal text) RETURNS text
LANGUAGE sql AS $$
  SELECT encode(sha256(convert_to(
    'action:' || to_json(action)::text || '|organizationId:null|outcomeDescription:null'
    || '|principalId:' || coalesce(to_json(nullif(principal, ''))::text, 'null')
    || '|status:' || to_json(status)::text || '|targetResourceId:null|targetResourceType:null'
    || '|timestamp:' || to_json(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text,
    'UTF8')), 'hex')
$$;
INSERT INTO audit_log ("timestamp", action, status, principal_id, hash, hash_algorithm, details)
SELECT ts, 'adopt.test', 'ok',
       CASE WHEN i % 10 = 0 THEN 'pseudo-' || substr(md5('orig-' || (i % 7)), 1, 16) ELSE 'u' || (i % 50) END,
       pg_temp.app_hash(ts, 'adopt.test', 'ok', CASE WHEN i % 10 = 0 THEN 'orig-' || (i % 7) ELSE 'u' || (i % 50) END),
       'SHA-256',
       nullif(CASE WHEN i % 10 = 0 THEN '{"pseudonymized": true}'::jsonb ELSE '{}' END
              || CASE WHEN i % 3 = 0 THEN jsonb_build_object('n', i, 'email', 'u' || (i % 50) || '@example.com')
                      ELSE '{}' END, '{}')
  FROM generate_series(0, 19999) i, LATERAL (SELECT :'base'::timestamptz + i * interval '90 minutes' AS ts) t;
UPDATE audit_log SET outcome_description = 'edited after the fact' WHERE id IN (102, 204, 306);
INSERT INTO audit_log ("timestamp", action, status, principal_id, hash, hash_algorithm)
SELECT ts, 'adopt.recent', 'ok', 'u' || i, pg_temp.app_hash(ts, 'adopt.recent', 'ok', 'u' || i), 'SHA-256'
  FROM generate_series(1, 19) i,
       LATERAL (SELECT greatest(date_trunc('milliseconds', now()) - i * interval '1 second',
                                date_trunc('month', now())) AS ts) t;
INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id,
                       retryable, aggregation_key, "timestamp")
SELECT 'e' || i, 'db', 'high', 'E1', 'boom', 'api', 'read', 'c' || i, 'false', 'k', :'base'::timestamptz + interval '200 days' + i * interval '1 day'
  FROM generate_series(1, 30) i;
INSERT INTO scheduled_reports (id, name, organization_id, criteria, format, schedule, delivery, created_by,
                               report_type, export)
SELECT 'r' || i, 'report', 'org', '{}', 'pdf', '{}', '{}', 'me', 'AUDIT', '{}' FROM generate_series(1, 3) i;
INSERT INTO report_executions (id, report_config_id, organization_id, scheduled_time, execution_time, status, run_id)
SELECT 'x' || i, 'r1', 'org', now(), now(), 'completed', 'run-' || i FROM generate_series(1, 5) i;
UPDATE scheduled_reports SET run_id = 'run-5' WHERE id = 'r1';
INSERT INTO alerts (id, organization_id, severity, type, title, description, source)
VALUES ('a1', 'org', 'HIGH', 'SECURITY', 't', 'd', 's');
-- Mapping rows in the original's format: its pseudonym and the original sealed by its
-- key service (opaque here).
INSERT INTO pseudonym_mapping ("timestamp", pseudonym_id, original_id)
SELECT now(), 'pseudo-' || substr(md5('orig-' || i), 1, 16), 'kms:v1:' || encode(sha256(('orig-' || i)::bytea), 'base64')
  FROM generate_series(0, 6) i;
-- The original's first versions stored the original in clear.
INSERT INTO pseudonym_mapping ("timestamp", pseudonym_id, original_id) VALUES (now(), 'pseudo-legacy-carol', 'carol');
INSERT INTO audit_log ("timestamp", action, status, principal_id, hash, hash_algorithm, details)
SELECT ts, 'adopt.carol', 'ok', 'pseudo-legacy-carol', pg_temp.app_hash(ts, 'adopt.carol', 'ok', 'carol'),
       'SHA-256', '{"pseudonymized": true}'
  FROM generate_series(1, 4) i, LATERAL (SELECT :'base'::timestamptz + interval '240 days' + i * interval '1 hour' AS ts) t;
-- Events dated infinity and -infinity, which the original accepted.
INSERT INTO audit_log ("timestamp", action, status) VALUES ('infinity', 'adopt.infinite', 'ok'), ('-infinity', 'adopt.infinite', 'ok');
-- A checksum of every row of every table, as the application sees it (its columns).
CREATE TEMP TABLE row_sums AS
SELECT 'audit_log' AS t, md5(string_agg(to_jsonb(a)::text, E'\n' ORDER BY a.id)) AS sum FROM audit_log a
UNION ALL SELECT 'error_log', md5(string_agg(to_jsonb(e)::text, E'\n' ORDER BY e.id)) FROM error_log e
UNION ALL SELECT 'scheduled_reports', md5(string_agg(to_jsonb(r)::text, E'\n' ORDER BY r.id)) FROM scheduled_reports r
UNION ALL SELECT 'report_executions', md5(string_agg(to_jsonb(x)::text, E'\n' ORDER BY x.id)) FROM report_executions x
UNION ALL SELECT 'alerts', md5(string_agg(to_jsonb(l)::text, E'\n' ORDER BY l.id)) FROM alerts l
UNION ALL SELECT 'pseudonym_mapping', md5(string_agg(to_jsonb(m)::text, E'\n' ORDER BY m.id)) FROM pseudonym_mapping m;
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
-- A column audit_db does not know: adoption refuses, naming it, and changes nothing.
ALTER TABLE alerts ADD COLUMN custom_note text, ADD COLUMN "Team Lead" text;
CREATE EXTENSION audit_db;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS extension_rows FROM pg_extension WHERE extname = 'audit_db';
SELECT relname FROM pg_class WHERE relname = 'alerts';
ALTER TABLE alerts DROP COLUMN custom_note, DROP COLUMN "Team Lead";
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
-- Every adopted row byte for byte, the application's hash and hash_algorithm included
-- (the columns audit_db adds are left out of the comparison; error_log lost its
-- session_id column above, so it is compared without it).
SELECT s.t, s.sum = a.sum AS rows_unchanged
  FROM row_sums s
  JOIN (SELECT 'audit_log' AS t,
               md5(string_agg((to_jsonb(a) - ARRAY['signature', 'chain_seq', 'chain_hash', 'row_hash', 'seal_epoch',
                                                   'personal_keys'])::text, E'\n' ORDER BY a.id)) AS sum
          FROM audit_log a
        UNION ALL SELECT 'error_log', md5(string_agg((to_jsonb(e) - 'session_id')::text, E'\n' ORDER BY e.id)) FROM error_log e
        UNION ALL SELECT 'scheduled_reports', md5(string_agg(to_jsonb(r)::text, E'\n' ORDER BY r.id)) FROM scheduled_reports r
        UNION ALL SELECT 'report_executions', md5(string_agg(to_jsonb(x)::text, E'\n' ORDER BY x.id)) FROM report_executions x
        UNION ALL SELECT 'alerts', md5(string_agg((to_jsonb(l) - 'acknowledged_by')::text, E'\n' ORDER BY l.id)) FROM alerts l
        UNION ALL SELECT 'pseudonym_mapping',
                         md5(string_agg((to_jsonb(m) - ARRAY['strategy', 'key_id', 'blind_index'])::text, E'\n' ORDER BY m.id))
          FROM pseudonym_mapping m) a USING (t)
 ORDER BY 1;
SELECT count(*) FILTER (WHERE hash = pg_temp.app_hash("timestamp", action, status, principal_id)) AS recent_hashes_kept,
       count(*) FILTER (WHERE tableoid <> 'audit_log_legacy'::regclass) AS moved_out_of_history
  FROM audit_log WHERE action = 'adopt.recent';
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
SELECT min(range_from) = date_trunc('month', (:'base'::timestamptz + interval '201 days') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
       AS first_error_partition_is_oldest_month
  FROM audit_partitions('error_log') WHERE NOT is_default;
SELECT parent FROM audit_partition_config ORDER BY parent::text;
SELECT count(*) AS events_in_default FROM audit_log_default;
SELECT * FROM audit_verify_schema();
SELECT count(*) AS old_tables_left FROM pg_class WHERE relname LIKE '%\_\_drizzle';
-- The Drizzle journal is imported before the install.
SELECT version, name, checksum, applied_at FROM audit_migrations() WHERE version LIKE 'drizzle:%';
SELECT version, name FROM audit_migrations() WHERE version NOT LIKE 'drizzle:%';
-- The infinite times are adopted as they were (reported by a WARNING above): -infinity
-- in the history partition, infinity in DEFAULT.
SELECT "timestamp", tableoid::regclass AS partition FROM audit_log WHERE action = 'adopt.infinite' ORDER BY 1;
-- The adopted history verifies against the application's own hashes: the three
-- edited rows are hash mismatches (the first named), the rows it pseudonymized after
-- hashing cannot be checked (NOTICE), the rest are verified (NOTICE).
SELECT * FROM audit_seal(0) \gset
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks, first_bad_id, unsealed, legacy
  FROM audit_verify_integrity();
-- The original application's pseudonyms stay reachable: a subject's rows are found
-- through an adopted clear-text mapping, or by the pseudonym itself; reversing one of
-- its pseudonyms names the application's key service.
SELECT jsonb_array_length(audit_export_subject('carol')) AS carol_rows;
SELECT jsonb_array_length(audit_export_subject('pseudo-' || substr(md5('orig-3'), 1, 16)))
       = (SELECT count(*) FROM audit_log WHERE principal_id = 'pseudo-' || substr(md5('orig-3'), 1, 16))
       AS found_by_its_pseudonym;
SELECT audit_depseudonymize('pseudo-' || substr(md5('orig-1'), 1, 16));
\echo :LAST_ERROR_SQLSTATE
\c postgres
DROP DATABASE audit_adopt;
