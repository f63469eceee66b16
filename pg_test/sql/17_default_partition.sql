-- Issue 19: parents without a DEFAULT partition (audit_partition_config.default_partition).
-- false: maintenance moves the DEFAULT partition's rows into partitions of their own,
-- then drops the empty DEFAULT (creation then needs only SHARE UPDATE EXCLUSIVE on the
-- parent); true: maintenance creates one when missing; NULL: left as it is.
-- Runs in a database of its own, so it depends on no other test file.
CREATE DATABASE regress_default_partition;
\c regress_default_partition
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION audit_db;

-- A parent of our own with rows of three months in its DEFAULT partition.
CREATE TABLE nd (id int, ts timestamptz NOT NULL, v text) PARTITION BY RANGE (ts);
CREATE TABLE nd_default PARTITION OF nd DEFAULT;
INSERT INTO nd SELECT i, '2020-01-01'::timestamptz + i * interval '10 days', 'r' || i FROM generate_series(0, 8) i;
SELECT md5(string_agg(id || v || ts, ',' ORDER BY id)) AS rows_before FROM nd \gset
INSERT INTO audit_partition_config (parent, premake, default_partition) VALUES ('nd', 1, false);

-- One run: a partition for each month with rows (the rows move), then the DEFAULT goes.
SELECT action, partition, detail FROM audit_partition_maintenance('2021-06-15')
 WHERE parent = 'nd'::regclass ORDER BY action, partition;
SELECT to_regclass('nd_default') IS NULL AS default_gone,
       (SELECT md5(string_agg(id || v || ts, ',' ORDER BY id)) FROM nd) = :'rows_before' AS same_rows,
       (SELECT string_agg(tableoid::regclass || '=' || n, ', ' ORDER BY tableoid::regclass::text)
          FROM (SELECT tableoid, count(*) AS n FROM nd GROUP BY 1) p) AS rows_per_partition;
-- Idempotent: a second run has nothing to do for nd.
SELECT count(*) AS steps_for_nd FROM audit_partition_maintenance('2021-06-15') WHERE parent = 'nd'::regclass;
-- The trade-off: a row for a range without a partition is refused (PostgreSQL's 23514).
\set VERBOSITY sqlstate
INSERT INTO nd VALUES (100, '2019-05-01', 'no partition');
\set VERBOSITY default

-- Creation without a DEFAULT takes only SHARE UPDATE EXCLUSIVE on the parent: it goes
-- through while another session holds a read of the parent and every partition (as
-- pg_dump does), where a parent with a DEFAULT partition has to wait.
CREATE EXTENSION dblink;
SELECT dblink_connect('reader', 'dbname=regress_default_partition host=' || current_setting('unix_socket_directories')
                                || ' port=' || current_setting('port') || ' user=postgres');
SELECT dblink_exec('reader', 'BEGIN');
SELECT * FROM dblink('reader', 'SELECT count(*) FROM nd') AS t(n bigint);
SELECT action, partition FROM audit_partition_maintenance('2021-09-15')
 WHERE parent = 'nd'::regclass ORDER BY partition;
SELECT dblink_exec('reader', 'COMMIT');

-- true: a DEFAULT partition is created again; a row dated infinity goes there.
UPDATE audit_partition_config SET default_partition = true WHERE parent = 'nd'::regclass;
SELECT action, partition, detail FROM audit_partition_maintenance('2021-09-15')
 WHERE parent = 'nd'::regclass;
INSERT INTO nd VALUES (101, 'infinity', 'unplaceable');
SELECT tableoid::regclass AS went_to FROM nd WHERE id = 101;
-- false again: that row fits no partition, so the DEFAULT stays, and the run says why.
UPDATE audit_partition_config SET default_partition = false WHERE parent = 'nd'::regclass;
SELECT action, partition, detail FROM audit_partition_maintenance('2021-09-15')
 WHERE parent = 'nd'::regclass;
SELECT to_regclass('nd_default') IS NOT NULL AS default_kept, count(*) AS rows_kept FROM ONLY nd_default;
DELETE FROM nd WHERE id = 101;
SELECT action, partition FROM audit_partition_maintenance('2021-09-15') WHERE parent = 'nd'::regclass;
-- NULL: left as it is.
UPDATE audit_partition_config SET default_partition = NULL WHERE parent = 'nd'::regclass;
SELECT count(*) AS steps_for_nd FROM audit_partition_maintenance('2021-09-15') WHERE parent = 'nd'::regclass;

-- audit_log itself: its DEFAULT partition (a member of the extension) goes; the schema
-- check no longer expects it, integrity still verifies, new events go to their month.
INSERT INTO audit_log ("timestamp", action, status) VALUES ('2020-03-03', 'old.event', 'ok');
UPDATE audit_partition_config SET default_partition = false WHERE parent = 'audit_log'::regclass;
SELECT action, partition FROM audit_partition_maintenance('2021-09-15')
 WHERE parent = 'audit_log'::regclass AND action IN ('created', 'default_dropped')
   AND (partition = 'audit_log_2020_03' OR action = 'default_dropped') ORDER BY action;
SELECT to_regclass('audit_log_default') IS NULL AS default_gone,
       (SELECT tableoid::regclass FROM audit_log WHERE action = 'old.event') AS old_event_in;
SELECT count(*) AS schema_drift FROM audit_verify_schema();
SELECT * FROM audit_seal(5000) \gset
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks, unsealed FROM audit_verify_integrity();
-- An admin may set the column; a plain reader may not.
CREATE ROLE regress_dp_admin IN ROLE audit_db_admin;
CREATE ROLE regress_dp_reader IN ROLE audit_db_reader;
SET ROLE regress_dp_admin;
UPDATE audit_partition_config SET default_partition = true WHERE parent = 'error_log'::regclass;
SET ROLE regress_dp_reader;
\set VERBOSITY sqlstate
UPDATE audit_partition_config SET default_partition = false WHERE parent = 'error_log'::regclass;
\set VERBOSITY default
RESET ROLE;
-- Back to a DEFAULT partition: created again (not a member), still no drift.
UPDATE audit_partition_config SET default_partition = true WHERE parent = 'audit_log'::regclass;
SELECT action, partition FROM audit_partition_maintenance('2021-09-15')
 WHERE parent = 'audit_log'::regclass AND action = 'default_created';
SELECT count(*) AS schema_drift FROM audit_verify_schema();

SELECT dblink_disconnect('reader');
DROP ROLE regress_dp_admin, regress_dp_reader;
\c postgres
DROP DATABASE regress_default_partition;
