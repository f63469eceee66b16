-- Daily and weekly intervals, retention edges, keep_table, analysis.
SET timezone = 'UTC';
\set VERBOSITY default

-- Daily partitions through a leap day, driven by audit_partition_config.
CREATE TABLE lc_daily (id serial, "timestamp" timestamptz NOT NULL, v text,
                       PRIMARY KEY (id, "timestamp")) PARTITION BY RANGE ("timestamp");
CREATE TABLE lc_daily_default PARTITION OF lc_daily DEFAULT;
INSERT INTO audit_partition_config (parent, "interval", premake) VALUES ('lc_daily', 'daily', 2);
SELECT * FROM audit_create_partitions('lc_daily', NULL, '2024-02-28 23:59:59+00');
SELECT * FROM audit_create_partitions('lc_daily', 1, '2024-02-29 00:00:00+00');
SELECT partition, range_from, range_to, is_default FROM audit_partitions('lc_daily');

-- Weekly partitions start on Monday and are named by ISO week.
CREATE TABLE lc_weekly ("timestamp" timestamptz NOT NULL) PARTITION BY RANGE ("timestamp");
INSERT INTO audit_partition_config (parent, "interval", premake) VALUES ('lc_weekly', 'weekly', 1);
SELECT * FROM audit_create_partitions('lc_weekly', NULL, '2024-12-31 10:00:00+00');
SELECT partition, range_from, range_to FROM audit_partitions('lc_weekly');
-- No DEFAULT partition here: an event outside every week fails, as PostgreSQL says.
INSERT INTO lc_weekly VALUES ('2030-01-01');
\echo :LAST_ERROR_SQLSTATE

-- Switching the interval: a monthly plan that overlaps the daily partitions skips
-- those months and creates the rest.
UPDATE audit_partition_config SET "interval" = 'monthly' WHERE parent = 'lc_daily'::regclass;
SELECT * FROM audit_create_partitions('lc_daily', 1, '2024-02-10');
-- The config table refuses an unknown interval.
UPDATE audit_partition_config SET "interval" = 'hourly' WHERE parent = 'lc_daily'::regclass;
\echo :LAST_ERROR_SQLSTATE

-- Retention on audit_log: months 2023-01 .. 2023-04 exist, one event in each.
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 3, '2023-01-10');
INSERT INTO audit_log ("timestamp", action, status)
SELECT m + interval '14 days', 'lc.retention', 'ok'
  FROM generate_series('2023-01-01'::timestamptz, '2023-04-01', '1 month') m;
-- No retention configured and none given: nothing is dropped.
SELECT count(*) AS dropped FROM audit_drop_expired_partitions('audit_log', NULL, false, now());
-- Cutoff 2023-02-28 23:59:59: January ends before it, and so does audit_log_2018_02.
SELECT * FROM audit_create_partitions('audit_log', 0, '2018-02-15');
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 month', false, '2023-03-31 23:59:59+00');
-- Cutoff exactly 2023-03-01: February's range ends at the cutoff, so every row in it
-- is older than the cutoff: it goes; March (ends 2023-04-01) stays.
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 month', false, '2023-04-01 00:00:00+00');
SELECT to_char("timestamp", 'YYYY-MM') AS month, tableoid::regclass
  FROM audit_log WHERE action = 'lc.retention' ORDER BY 1;
-- keep_table: March is detached and renamed, with its row.
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 month', true, '2023-05-01 00:00:00+00');
SELECT relname, relispartition, (SELECT count(*) FROM audit_log_2023_03_detached) AS rows_kept
  FROM pg_class WHERE relname = 'audit_log_2023_03_detached';
DROP TABLE audit_log_2023_03_detached;
-- Retention from the config row.
UPDATE audit_partition_config SET retention = '20 days' WHERE parent = 'audit_log'::regclass;
SELECT * FROM audit_drop_expired_partitions('audit_log', reference_time => '2023-05-21 00:00:00+00');
UPDATE audit_partition_config SET retention = NULL WHERE parent = 'audit_log'::regclass;
-- The DEFAULT partition and the partitions of today are never candidates.
SELECT count(*) AS dropped FROM audit_drop_expired_partitions('audit_log', '1 day', false, '1990-01-01');

-- Bad input.
SELECT audit_drop_expired_partitions('audit_log', '0 days');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_drop_expired_partitions('audit_log', '-1 month');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_drop_expired_partitions('audit_log', '1 month', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit_drop_expired_partitions(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit_drop_expired_partitions('audit_integrity_log', '1 month');
\echo :LAST_ERROR_SQLSTATE
UPDATE audit_partition_config SET premake = -1 WHERE parent = 'lc_daily'::regclass;
\echo :LAST_ERROR_SQLSTATE
UPDATE audit_partition_config SET retention = '-1 day' WHERE parent = 'lc_daily'::regclass;
\echo :LAST_ERROR_SQLSTATE

-- Analysis: lc_daily as of 2024-02-29 12:00 has today's partition and ones ahead,
-- 3 rows in DEFAULT, no retention.
INSERT INTO lc_daily ("timestamp", v) VALUES ('2020-01-01', 'old'), ('2020-01-02', 'old'), ('2031-01-01', 'future');
INSERT INTO lc_daily ("timestamp", v) VALUES ('2024-02-29 08:00', 'today');
ANALYZE lc_daily;
SELECT total_partitions, total_rows, total_bytes > 0 AS has_bytes,
       average_partition_bytes = total_bytes / total_partitions AS average_ok,
       regexp_replace(array_to_string(recommendations, E'\n'), '\(\d+ > 1 bytes\)', '(N > 1 bytes)', 'g') AS recommendations
  FROM audit_analyze_partitions('lc_daily', 1, '2024-02-29 12:00:00+00');
SELECT recommendations FROM audit_analyze_partitions('lc_daily', reference_time => '2030-06-01');
SELECT audit_analyze_partitions('lc_daily', 0);
\echo :LAST_ERROR_SQLSTATE

DELETE FROM audit_partition_config WHERE parent IN ('lc_daily'::regclass, 'lc_weekly'::regclass);
DROP TABLE lc_daily, lc_weekly;
