-- audit_db 0.1.0 -> 0.2.0: partition lifecycle and the migration journal.
-- Hand-written, additive and data-preserving; RELEASED: never edit, add a new step.
--   * audit_partition_config (seeded with audit_log and error_log)
--   * audit_schema_migrations, audit_migrations(), audit_schema_version(),
--     audit_pending_migrations(), audit_schema_snapshot(), audit_verify_schema(),
--     audit_finish_restore() and the event trigger audit_db_restore_indexes
--   * audit_drop_expired_partitions(), audit_partition_maintenance(),
--     audit_analyze_partitions(), audit_convert_to_partitioned()
--   * audit_create_partitions(): premake now defaults to the config row (NULL)
--   * audit_partitions(): MINVALUE / MAXVALUE bounds read as -infinity / infinity
--   * every data table and sequence registered with pg_extension_config_dump,
--     so that pg_dump keeps their rows (0.1.0 lost them)
\echo Use "ALTER EXTENSION audit_db UPDATE" to load this file. \quit

SELECT pg_catalog.set_config('audit_db.script_started', pg_catalog.clock_timestamp()::text, true);

-- --------------------------------------------------- audit_partition_config
-- One row per partitioned parent that audit_partition_maintenance() keeps.
-- retention NULL = keep every partition; lock_timeout bounds every lock wait of
-- maintenance; last_run_* record the outcome of the last maintenance run.
CREATE TABLE audit_partition_config (
    parent regclass PRIMARY KEY,
    "interval" text NOT NULL DEFAULT 'monthly'
        CONSTRAINT audit_partition_config_interval_check
        CHECK ("interval" IN ('daily', 'weekly', 'monthly')),
    premake integer NOT NULL DEFAULT 6
        CONSTRAINT audit_partition_config_premake_check CHECK (premake BETWEEN 0 AND 1000),
    retention interval
        CONSTRAINT audit_partition_config_retention_check CHECK (retention > interval '0'),
    keep_table boolean NOT NULL DEFAULT false,
    auto_create boolean NOT NULL DEFAULT true,
    auto_drop boolean NOT NULL DEFAULT true,
    lock_timeout interval NOT NULL DEFAULT interval '2 seconds'
        CONSTRAINT audit_partition_config_lock_timeout_check
        CHECK (lock_timeout > interval '0' AND lock_timeout <= interval '1 hour'),
    last_run_at timestamptz,
    last_run_result text
);
COMMENT ON TABLE audit_partition_config IS
'Partition upkeep per parent: interval (daily, weekly, monthly), premake periods ahead, retention (NULL = keep all), keep_table (detach and keep instead of drop), auto_create/auto_drop switches, lock_timeout for maintenance, and the last maintenance run.';
INSERT INTO audit_partition_config (parent) VALUES ('@extschema@.audit_log'), ('@extschema@.error_log');

-- ------------------------------------------------- audit_schema_migrations
-- The migration journal: the install script and every upgrade script record
-- themselves here (a failed script rolls back with its transaction, so success is
-- true for every row PostgreSQL keeps; the column is there for imported history).
CREATE TABLE audit_schema_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    applied_by name NOT NULL DEFAULT session_user,
    execution_ms integer,
    success boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE audit_schema_migrations IS
'Migration journal of audit_db: one row per install or upgrade script applied (version, name, sha256 of the script file, when, by whom, how long), plus history imported when adopting a Drizzle-managed database.';

CREATE FUNCTION audit_migrations()
RETURNS TABLE(version text, name text, checksum text, applied_at timestamptz,
              applied_by name, execution_ms integer, success boolean)
LANGUAGE sql STABLE
AS $fn$
    SELECT m.version, m.name, m.checksum, m.applied_at, m.applied_by, m.execution_ms, m.success
      FROM @extschema@.audit_schema_migrations m
     ORDER BY m.applied_at, m.version
$fn$;

CREATE FUNCTION audit_schema_version() RETURNS text
LANGUAGE sql STABLE
AS $fn$
    SELECT e.extversion::text FROM pg_catalog.pg_extension e WHERE e.extname = 'audit_db'
$fn$;

CREATE FUNCTION audit_pending_migrations()
RETURNS TABLE(target_version text, path text)
LANGUAGE sql STABLE
AS $fn$
    SELECT u.target::text, u.path
      FROM pg_catalog.pg_extension_update_paths('audit_db') u
      JOIN pg_catalog.pg_extension e ON e.extname = 'audit_db' AND u.source = e.extversion
     WHERE u.path IS NOT NULL
     ORDER BY pg_catalog.string_to_array(pg_catalog.regexp_replace(u.target, '[^0-9.]', '', 'g'), '.')::int[], u.target
$fn$;

-- ------------------------------------------------------ partition listing
CREATE OR REPLACE FUNCTION audit_partitions(parent regclass DEFAULT 'audit_log')
RETURNS TABLE(partition regclass, range_from timestamptz, range_to timestamptz,
              is_default boolean, row_estimate bigint, total_bytes bigint)
LANGUAGE sql STABLE STRICT
SET datestyle TO 'ISO, YMD'
AS $fn$
    SELECT c.oid::regclass,
           CASE WHEN b.m IS NOT NULL THEN coalesce(b.m[1]::timestamptz, '-infinity') END,
           CASE WHEN b.m IS NOT NULL THEN coalesce(b.m[2]::timestamptz, 'infinity') END,
           pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT',
           CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END,
           pg_catalog.pg_total_relation_size(c.oid)
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      CROSS JOIN LATERAL (
            SELECT pg_catalog.regexp_match(
                       pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                       'FROM \((?:''([^'']*)''|MINVALUE)\) TO \((?:''([^'']*)''|MAXVALUE)\)') AS m) b
     WHERE i.inhparent = parent
     ORDER BY 4, 2, c.relname
$fn$;
COMMENT ON FUNCTION audit_partitions(regclass) IS
'Lists the partitions of a range-partitioned audit table: bounds (MINVALUE/MAXVALUE as -infinity/infinity, NULL for DEFAULT), whether it is the DEFAULT partition, planner row estimate (NULL before the first ANALYZE) and total size in bytes.';

-- ------------------------------------------------------------ functions
CREATE OR REPLACE FUNCTION "audit_create_partitions"(
	"parent" regclass DEFAULT 'audit_log',
	"premake" INT DEFAULT NULL,
	"reference_time" timestamp with time zone DEFAULT now()
) RETURNS SETOF TEXT
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_create_partitions_wrapper';

CREATE FUNCTION "audit_drop_expired_partitions"(
	"parent" regclass DEFAULT 'audit_log',
	"retention" interval DEFAULT NULL,
	"keep_table" bool DEFAULT false,
	"reference_time" timestamp with time zone DEFAULT now()
) RETURNS SETOF TEXT
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_drop_expired_partitions_wrapper';

CREATE FUNCTION "audit_partition_maintenance"(
	"reference_time" timestamp with time zone DEFAULT now()
) RETURNS TABLE (
	"parent" regclass, 
	"action" TEXT, 
	"partition" TEXT, 
	"detail" TEXT 
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_partition_maintenance_wrapper';

CREATE FUNCTION "audit_analyze_partitions"(
	"parent" regclass DEFAULT 'audit_log',
	"size_threshold" bigint DEFAULT 10737418240,
	"reference_time" timestamp with time zone DEFAULT now()
) RETURNS TABLE (
	"total_partitions" INT, 
	"total_bytes" bigint, 
	"total_rows" bigint, 
	"average_partition_bytes" bigint, 
	"recommendations" TEXT[] 
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_analyze_partitions_wrapper';

CREATE FUNCTION "audit_convert_to_partitioned"(
	"tbl" regclass DEFAULT 'audit_log',
	"mode" TEXT DEFAULT 'attach',
	"key_column" TEXT DEFAULT 'timestamp'
) RETURNS TEXT
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_convert_to_partitioned_wrapper';

CREATE FUNCTION "audit_schema_snapshot"() RETURNS TABLE (
	"object_type" TEXT, 
	"object_name" TEXT, 
	"definition" TEXT 
)
STRICT STABLE PARALLEL SAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_schema_snapshot_wrapper';

CREATE FUNCTION "audit_verify_schema"() RETURNS TABLE (
	"object_type" TEXT, 
	"object_name" TEXT, 
	"problem" TEXT 
)
STRICT STABLE PARALLEL SAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_verify_schema_wrapper';

CREATE FUNCTION "audit_finish_restore"() RETURNS SETOF TEXT
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_finish_restore_wrapper';

-- ----------------------------------------------------------- privileges
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
REVOKE ALL ON FUNCTION audit_migrations() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_schema_version() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_pending_migrations() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_schema_snapshot() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_verify_schema() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_finish_restore() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_finish_restore() TO audit_db_admin;
GRANT SELECT ON audit_schema_migrations TO audit_db_reader, audit_db_admin;
GRANT EXECUTE ON FUNCTION audit_migrations(), audit_schema_version(), audit_pending_migrations(),
                          audit_schema_snapshot(), audit_verify_schema()
   TO audit_db_reader, audit_db_admin;
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

COMMENT ON FUNCTION audit_migrations() IS
'The migration journal (audit_schema_migrations) in order: version, name, sha256 of the script, when, by whom, milliseconds, success.';
COMMENT ON FUNCTION audit_schema_version() IS
'The installed version of audit_db, as pg_extension has it.';
COMMENT ON FUNCTION audit_pending_migrations() IS
'Versions the installed audit_db can be updated to (ALTER EXTENSION audit_db UPDATE TO ...), with the script path, from pg_extension_update_paths.';
COMMENT ON FUNCTION audit_schema_snapshot() IS
'The live catalog of the extension''s objects: tables, columns (type; nullability; default), indexes, constraints, table and function privileges, function definitions. audit_verify_schema() compares it with the shipped manifest.';
COMMENT ON FUNCTION audit_finish_restore() IS
'After pg_restore of a database with audit_db: recreates the primary keys and indexes of the partitioned parents (dropped while the extension was recreated, so that the dump''s statements for each partition''s indexes apply), attaching the restored partitions'' indexes. Returns the names created; none when nothing is missing. Maintenance runs it too.';
COMMENT ON FUNCTION audit_verify_schema() IS
'Compares the live catalog with what the installed version of audit_db ships, plus every partition''s indexes; one row per drift (missing, unexpected, type differs, ...). No rows = exactly as shipped.';

-- ------------------------------------------------------- pg_dump support
-- Extension member tables are not dumped unless registered: every table that holds
-- data (the DEFAULT partitions included) and every sequence. The parents are
-- partitioned and hold no rows of their own; the dated partitions are ordinary tables
-- and pg_dump dumps them with their rows.
DO $dump$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db'
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
           AND c.relkind IN ('r', 'S')
         ORDER BY c.relname
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(rel, '');
    END LOOP;
END
$dump$;

-- ------------------------------------------------- restoring partition indexes
-- A restore recreates the extension with its parents stripped of their indexes
-- (below), then pg_dump's statements create each partition's indexes and finally
-- ALTER INDEX <parent index> ATTACH PARTITION <partition index>. Just before the first
-- of those, this trigger puts the parents' indexes back (audit_finish_restore(): they
-- attach the partitions' matching indexes), so the ATTACH statements find them and
-- have nothing left to do. At any other time it costs two catalog lookups.
CREATE FUNCTION audit_restore_indexes_trigger() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = @extschema@, pg_catalog, pg_temp
AS $fn$
BEGIN
    IF pg_catalog.to_regclass('@extschema@.audit_log_pkey') IS NULL
       OR pg_catalog.to_regclass('@extschema@.error_log_pkey') IS NULL THEN
        PERFORM @extschema@.audit_finish_restore();
    END IF;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'audit_db: could not recreate the indexes of audit_log and error_log: %', SQLERRM
          USING HINT = 'Run SELECT audit_finish_restore(); to see why.';
END
$fn$;
REVOKE ALL ON FUNCTION audit_restore_indexes_trigger() FROM PUBLIC;
COMMENT ON FUNCTION audit_restore_indexes_trigger() IS
'Event trigger function (ddl_command_start, ALTER INDEX): during a restore, recreates the partitioned parents'' indexes before pg_dump''s ALTER INDEX ... ATTACH PARTITION statements need them.';
CREATE EVENT TRIGGER audit_db_restore_indexes ON ddl_command_start
    WHEN TAG IN ('ALTER INDEX') EXECUTE FUNCTION audit_restore_indexes_trigger();

-- -------------------------------------------------------------- journal
-- 0.1.0 kept no journal: its row is recorded now, with the checksum of its script.
INSERT INTO audit_schema_migrations (version, name, checksum, execution_ms)
SELECT v.version, v.name,
       pg_catalog.encode(pg_catalog.sha256(pg_catalog.pg_read_binary_file(
           (SELECT setting FROM pg_catalog.pg_config() WHERE name = 'SHAREDIR') || '/extension/' || v.file,
           0, 67108864, true)), 'hex'),
       v.ms
  FROM (VALUES (1, '0.1.0', 'install (recorded by the 0.2.0 upgrade)', 'audit_db--0.1.0.sql', NULL::int),
               (2, '0.2.0', 'partition lifecycle, migration journal', 'audit_db--0.1.0--0.2.0.sql',
                (extract(epoch FROM pg_catalog.clock_timestamp()
                          - pg_catalog.current_setting('audit_db.script_started')::timestamptz) * 1000)::int))
       AS v(ord, version, name, file, ms)
 ORDER BY v.ord;
