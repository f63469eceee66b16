-- audit_db: privileges, function documentation and the first partitions.

-- ----------------------------------------------------------- privileges
-- Writers append events, readers read everything, admins run maintenance.
-- Nothing is granted to PUBLIC beyond what PostgreSQL grants by default; the
-- maintenance functions are revoked from PUBLIC.
DO $grants$
BEGIN
    IF current_schema() <> 'public' THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO audit_db_writer, audit_db_reader, audit_db_admin, audit_db_gdpr',
                       current_schema());
    END IF;
END
$grants$;

GRANT SELECT ON audit_log, error_log, audit_integrity_log, audit_retention_policy,
                error_aggregation, alerts, scheduled_reports, report_executions,
                report_templates, audit_preset, archive_storage, archive_dlq_event,
                config_change_event, pseudonym_mapping
   TO audit_db_reader, audit_db_admin;
GRANT INSERT ON audit_log, error_log TO audit_db_writer;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO audit_db_writer;

GRANT SELECT ON audit_partition_config TO audit_db_reader, audit_db_admin;
-- Admins tune the configured parents; adding a row for another table is for its owner
-- or a superuser (maintenance runs as SECURITY DEFINER).
GRANT UPDATE ("interval", premake, retention, keep_table, auto_create, auto_drop, lock_timeout)
   ON audit_partition_config TO audit_db_admin;

REVOKE ALL ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_drop_expired_partitions(regclass, interval, boolean, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_partition_maintenance(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_analyze_partitions(regclass, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_convert_to_partitioned(regclass, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_partitions(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_create_partitions(regclass, integer, timestamptz),
                          audit_drop_expired_partitions(regclass, interval, boolean, timestamptz),
                          audit_partition_maintenance(timestamptz)
   TO audit_db_admin;
GRANT EXECUTE ON FUNCTION audit_partitions(regclass),
                          audit_analyze_partitions(regclass, bigint, timestamptz)
   TO audit_db_reader, audit_db_admin;

-- -------------------------------------------------------- documentation
COMMENT ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) IS
'Creates the partitions of a range-partitioned audit table for the period containing reference_time (default now()) and premake periods ahead (NULL = the parent''s audit_partition_config row, else 6), with the row''s interval (daily, weekly or monthly; default monthly) and UTC midnight bounds, named <parent>_YYYY_MM, <parent>_YYYY_MM_DD or <parent>_IYYY_wIW. Rows already in the DEFAULT partition for a new range are moved into it. Never takes ACCESS EXCLUSIVE on the parent. Idempotent: returns the names it created, none on a second call.';
COMMENT ON FUNCTION audit_drop_expired_partitions(regclass, interval, boolean, timestamptz) IS
'Drops, or with keep_table detaches and renames to <name>_detached, every partition whose whole range ends at or before reference_time - retention (NULL retention = the config row; none configured = nothing). Never the DEFAULT partition nor one open-ended above. Returns the partitions removed.';
COMMENT ON FUNCTION audit_partition_maintenance(timestamptz) IS
'Creates then drops partitions for every row of audit_partition_config; the call to schedule with pg_cron. One run at a time (advisory lock; a second returns at once), nothing on a hot standby, each DDL in a subtransaction under the row''s lock_timeout: a partition it cannot lock is reported as skipped and done by a later run. Records last_run_at/last_run_result per parent. Creation takes only SHARE UPDATE EXCLUSIVE on a parent; the drops, which need ACCESS EXCLUSIVE on the parent, run last in a single DROP TABLE statement.';
COMMENT ON FUNCTION audit_analyze_partitions(regclass, bigint, timestamptz) IS
'Totals over the partitions of a parent (count, bytes, estimated rows, average size) and recommendations: no partition covering or ahead of now, rows in DEFAULT, partitions above size_threshold bytes, retention not configured.';
COMMENT ON FUNCTION audit_convert_to_partitioned(regclass, text, text) IS
'Converts a plain audit table into the partitioned layout, keeping every row, index, grant and sequence value. attach: the old table becomes one partition FROM (MINVALUE) behind a validated CHECK constraint, no row copy; copy: rows are re-split into monthly partitions month by month. Verifies the row count; on any error nothing changes.';

-- ----------------------------------------------------- first partitions
SELECT audit_create_partitions('audit_log');
SELECT audit_create_partitions('error_log');
