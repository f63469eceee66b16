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

REVOKE ALL ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) TO audit_db_admin;
REVOKE ALL ON FUNCTION audit_partitions(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_partitions(regclass) TO audit_db_reader, audit_db_admin;

-- -------------------------------------------------------- documentation
COMMENT ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) IS
'Creates the monthly partitions of a range-partitioned audit table for the month containing reference_time (default now()) and premake months ahead (default 6), named <parent>_YYYY_MM with UTC month-start bounds. Rows already in the DEFAULT partition for a new range are moved into it. Idempotent: returns the names it created, none on a second call.';

-- ----------------------------------------------------- first partitions
SELECT audit_create_partitions('audit_log');
SELECT audit_create_partitions('error_log');
