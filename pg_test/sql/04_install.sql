-- CREATE EXTENSION ... SCHEMA, DROP EXTENSION, and re-install.
DROP EXTENSION audit_db;
SELECT count(*) AS leftover_tables FROM pg_class
 WHERE relname ~ '^(audit_|error_|alerts|scheduled_reports|report_|archive_|config_change|pseudonym_)'
   AND relkind IN ('r', 'p', 'S', 'i', 'I');
SELECT count(*) AS leftover_functions FROM pg_proc WHERE proname LIKE 'audit\_%';
-- Roles are cluster-wide and survive on purpose.
SELECT count(*) AS roles_kept FROM pg_roles WHERE rolname LIKE 'audit\_db\_%';

CREATE SCHEMA audit_x;
CREATE EXTENSION audit_db SCHEMA audit_x;
SET search_path = public;
SELECT count(*) AS tables_in_audit_x FROM pg_tables WHERE schemaname = 'audit_x';
-- Unqualified defaults resolve to the extension's own schema.
SELECT count(*) AS created FROM audit_x.audit_create_partitions();
SELECT * FROM audit_x.audit_create_partitions(premake => 0, reference_time => '2019-07-04 00:00:00+00');
SELECT partition FROM audit_x.audit_partitions() WHERE partition::text LIKE '%2019%';
INSERT INTO audit_x.audit_log ("timestamp", action, status) VALUES ('2019-07-05 10:00:00+00', 'x', 'ok');
SELECT tableoid::regclass FROM audit_x.audit_log;
SELECT has_schema_privilege('audit_db_reader', 'audit_x', 'USAGE') AS reader_usage;
-- The manifest is schema-independent: verification is clean in audit_x too.
SELECT * FROM audit_x.audit_verify_schema();
SELECT version, name FROM audit_x.audit_migrations();

DROP EXTENSION audit_db;
SELECT count(*) AS tables_in_audit_x FROM pg_tables WHERE schemaname = 'audit_x';
DROP SCHEMA audit_x;
RESET search_path;

-- Drop and create again in the default schema: the fresh install is complete.
CREATE EXTENSION audit_db;
DROP EXTENSION audit_db;
CREATE EXTENSION audit_db;
SELECT count(*) FILTER (WHERE NOT is_default) AS months, count(*) FILTER (WHERE is_default) AS defaults
  FROM audit_partitions();
