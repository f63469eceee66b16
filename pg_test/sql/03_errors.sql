-- Bad input: SQLSTATE-coded errors with a HINT, and nothing created.
\set VERBOSITY default
SELECT count(*) AS partitions_before FROM pg_inherits WHERE inhparent = 'audit_log'::regclass \gset

SELECT audit_create_partitions(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('audit_integrity_log');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('audit_log', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('audit_log', 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('audit_log', 1, 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('audit_log', 1, '9999-12-15');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('no_such_table');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('audit_log_default');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions('pg_class');
\echo :LAST_ERROR_SQLSTATE

-- A partitioned table keyed on something other than one timestamptz column.
CREATE TABLE by_list (k text, ts timestamptz) PARTITION BY LIST (k);
SELECT audit_create_partitions('by_list');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE by_date (d date) PARTITION BY RANGE (d);
SELECT audit_create_partitions('by_date');
\echo :LAST_ERROR_SQLSTATE

-- A table squatting on the name of a partition to create (anyone with CREATE on the
-- schema can make one): the partition takes the next free name, and the others are
-- made (issue 25: 42P07 here stopped every missing partition of the parent, in every
-- maintenance run). Rolled back: the other files share this database.
CREATE TABLE audit_log_2031_01 (x int);
BEGIN;
SELECT audit_create_partitions('audit_log', 1, '2030-12-10');
SELECT partition::text FROM audit_partitions('audit_log') WHERE partition::text LIKE 'audit_log_203%' ORDER BY 1;
ROLLBACK;
DROP TABLE audit_log_2031_01, by_list, by_date;

-- A parent whose generated names would exceed 63 bytes.
CREATE TABLE a_parent_table_with_a_name_that_is_just_a_bit_too_long_xx (ts timestamptz) PARTITION BY RANGE (ts);
SELECT audit_create_partitions('a_parent_table_with_a_name_that_is_just_a_bit_too_long_xx', 0, '2030-01-01');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE a_parent_table_with_a_name_that_is_just_a_bit_too_long_xx;

-- An existing partition with other bounds overlapping a planned month is left alone
-- (on error_log: a partition of audit_log cannot be dropped by hand, see 13_integrity).
SELECT count(*) AS error_partitions_before FROM pg_inherits WHERE inhparent = 'error_log'::regclass \gset
CREATE TABLE error_log_custom PARTITION OF error_log
    FOR VALUES FROM ('2032-03-10 00:00:00+00') TO ('2032-03-20 00:00:00+00');
SELECT * FROM audit_create_partitions('error_log', 1, '2032-03-15 00:00:00+00');
DROP TABLE error_log_custom, error_log_2032_04;
SELECT count(*) = :error_partitions_before AS error_log_as_before
  FROM pg_inherits WHERE inhparent = 'error_log'::regclass;

SELECT count(*) = :partitions_before AS nothing_left_behind
  FROM pg_inherits WHERE inhparent = 'audit_log'::regclass;
