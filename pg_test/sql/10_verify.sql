-- audit_verify_schema(): no rows when the catalog is as shipped; each kind of drift
-- reported as one row. Every change is rolled back.
SELECT * FROM audit_verify_schema();
BEGIN;
DROP INDEX audit_log_action_idx;
ALTER TABLE alerts ALTER COLUMN severity TYPE text;
ALTER TABLE alerts ADD COLUMN stray integer;
ALTER TABLE audit_preset ALTER COLUMN description SET NOT NULL;
ALTER TABLE error_aggregation ALTER COLUMN count SET DEFAULT 7;
CREATE INDEX audit_log_extra_idx ON audit_log (ttl);
GRANT EXECUTE ON FUNCTION audit_verify_schema() TO PUBLIC;
SELECT * FROM audit_verify_schema();
ROLLBACK;
-- A partition attached by hand gets every index of the parent: no drift.
BEGIN;
CREATE TABLE audit_log_1990_01 (LIKE audit_log INCLUDING DEFAULTS);
ALTER TABLE audit_log ATTACH PARTITION audit_log_1990_01 FOR VALUES FROM ('1990-01-01 00:00:00+00') TO ('1990-02-01 00:00:00+00');
SELECT * FROM audit_verify_schema();
ROLLBACK;
-- An index created ON ONLY the parent exists on no partition: one row per partition.
BEGIN;
CREATE INDEX audit_log_only_idx ON ONLY audit_log (ttl);
SELECT count(*) FILTER (WHERE object_name = 'audit_log_only_idx' AND problem = 'unexpected') AS parent_row,
       count(*) FILTER (WHERE object_name LIKE '%: audit_log_only_idx' AND problem = 'missing')
         = (SELECT count(*) FROM audit_partitions('audit_log')) AS one_row_per_partition
  FROM audit_verify_schema();
ROLLBACK;
-- Triggers (0.5.0): a disabled or dropped integrity trigger is drift, on the parent and
-- on any one partition.
BEGIN;
ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
DROP TRIGGER audit_log_no_truncate ON audit_log;
ALTER TABLE audit_log_default DISABLE TRIGGER audit_log_integrity;
SELECT * FROM audit_verify_schema();
ROLLBACK;
-- The privilege to run it.
CREATE ROLE regress_verify_nobody;
SET ROLE regress_verify_nobody;
SELECT * FROM audit_verify_schema();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE regress_verify_nobody;
