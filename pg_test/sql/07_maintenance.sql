-- audit_partition_maintenance(): create then drop per config row, lock timeouts
-- reported as skipped, one run at a time, and a real pg_cron job.
SET timezone = 'UTC';
CREATE EXTENSION dblink;
SELECT format('host=%s port=%s dbname=%s user=postgres',
              current_setting('unix_socket_directories'), current_setting('port'),
              current_database()) AS conninfo \gset
SELECT dblink_connect('other', :'conninfo');

UPDATE audit_partition_config SET retention = '3 months', lock_timeout = '200ms'
 WHERE parent = 'audit_log'::regclass;
UPDATE audit_partition_config SET premake = 1, auto_drop = false WHERE parent = 'error_log'::regclass;
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 2, '2020-01-10');

-- As of 2020-08-15: months 2020-08 .. 2021-02 created for audit_log, 2020-08 .. 09 for
-- error_log; audit_log partitions ending by the cutoff 2020-05-15 dropped.
SELECT * FROM audit_partition_maintenance('2020-08-15 00:00:00+00') WHERE action <> 'sealed';
-- Idempotent.
SELECT count(*) AS steps FROM audit_partition_maintenance('2020-08-15 00:00:00+00');
SELECT parent, last_run_at IS NOT NULL AS ran, last_run_result FROM audit_partition_config ORDER BY parent::text;

-- Another session reads an expired partition: dropping it needs ACCESS EXCLUSIVE, so
-- maintenance tries in 50 ms attempts (audit_db.lock_attempt_timeout) for the parent's
-- lock_timeout (200 ms), then leaves this parent's drops to a later run (one attempt
-- locks its expired partitions together). Both are long past retention: overdue,
-- with a WARNING each.
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', 'LOCK TABLE audit_log_2020_08 IN ACCESS SHARE MODE');
SELECT * FROM audit_partition_maintenance('2021-01-15 00:00:00+00') WHERE action <> 'sealed';
SELECT dblink_exec('other', 'COMMIT');
-- The next run finishes the job.
SELECT * FROM audit_partition_maintenance('2021-01-15 00:00:00+00') WHERE action <> 'sealed';

-- Creating needs ACCESS EXCLUSIVE on the DEFAULT partition (to check it holds no row
-- of the new range): a reader of DEFAULT makes the new months wait for the next run,
-- and the drops too (PostgreSQL locks DEFAULT to drop any partition).
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', 'LOCK TABLE audit_log_default IN ACCESS SHARE MODE');
SELECT parent, action, partition FROM audit_partition_maintenance('2021-03-02 00:00:00+00')
 WHERE parent = 'audit_log'::regclass;
SELECT dblink_exec('other', 'COMMIT');
SELECT parent, action, partition FROM audit_partition_maintenance('2021-03-02 00:00:00+00')
 WHERE parent = 'audit_log'::regclass;

-- An open insert transaction holds the parent (ROW EXCLUSIVE). Creating a partition
-- next to a DEFAULT one holds writers off for a moment (SHARE ROW EXCLUSIVE), and
-- dropping needs ACCESS EXCLUSIVE: both wait lock_timeout, are skipped, and the next
-- run does them.
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', $$INSERT INTO audit_log ("timestamp", action, status) VALUES ('2021-03-05', 'concurrent', 'ok')$$);
SELECT parent, action, partition FROM audit_partition_maintenance('2021-04-02 00:00:00+00')
 WHERE parent = 'audit_log'::regclass;
SELECT dblink_exec('other', 'COMMIT');
SELECT tableoid::regclass FROM audit_log WHERE action = 'concurrent';
SELECT parent, action, partition FROM audit_partition_maintenance('2021-04-02 00:00:00+00')
 WHERE parent = 'audit_log'::regclass;

-- Creation and retention in two transactions: CALL audit_maintain() (each step is a
-- NOTICE, left out here: the sealing step depends on other files' rows).
SET client_min_messages = warning;
CALL audit_maintain('2021-06-02 00:00:00+00');
RESET client_min_messages;
SELECT count(*) FILTER (WHERE range_to <= '2021-03-02') AS expired_left,
       max(range_to) >= '2021-07-01' AS created_ahead
  FROM audit_partitions('audit_log') WHERE NOT is_default;
SELECT last_run_result FROM audit_partition_config WHERE parent = 'audit_log'::regclass;
SELECT count(*) FROM audit_partition_maintenance_phase('rebuild');
BEGIN;
CALL audit_maintain('2021-06-02 00:00:00+00');
ROLLBACK;

-- One run at a time: while another session holds the maintenance lock, a run
-- returns at once, saying so.
SELECT * FROM dblink('other', $$SELECT 'held' FROM pg_advisory_lock(hashtext('audit_db.maintenance'))$$) AS t(x text);
SELECT * FROM audit_partition_maintenance();
SELECT * FROM dblink('other', $$SELECT pg_advisory_unlock(hashtext('audit_db.maintenance'))$$) AS t(x bool);

-- A configured parent that was dropped is reported, not fatal.
CREATE TABLE gone (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
INSERT INTO audit_partition_config (parent) VALUES ('gone');
DROP TABLE gone;
SELECT action, partition, detail ~ 'no longer exists' AS explained
  FROM audit_partition_maintenance('2021-04-02 00:00:00+00') WHERE action = 'failed';
DELETE FROM audit_partition_config WHERE NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = parent::oid);

-- lock_timeout of the caller is restored afterwards.
SET lock_timeout = '7s';
SELECT count(*) FILTER (WHERE action = 'failed') AS failed_steps FROM audit_partition_maintenance();
SHOW lock_timeout;
RESET lock_timeout;

SELECT dblink_disconnect('other');

UPDATE audit_partition_config SET premake = 6, auto_drop = true, retention = NULL, lock_timeout = '2s';
DROP EXTENSION dblink;
