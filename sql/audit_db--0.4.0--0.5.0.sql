-- audit_db 0.4.0 -> 0.5.0: reliability and privileges (issue 8).
-- Hand-written, additive and data-preserving; once released (listed in sql/RELEASED)
-- never edited: later changes get a new step.
--   * audit_chain_lock() / audit_chain_store(): EXECUTE revoked from audit_db_writer,
--     audit_db_admin and audit_db_gdpr. The integrity trigger now calls them as the
--     extension's owner, so a session can no longer move a chain head (and make the
--     chain look broken) except by inserting an event.
--   * audit_partition_config: trigger audit_partition_config_check refuses a parent
--     that is not partitioned by range on one timestamptz column (42809).
\echo Use "ALTER EXTENSION audit_db UPDATE" to load this file. \quit

SELECT pg_catalog.set_config('audit_db.script_started', pg_catalog.clock_timestamp()::text, true);

-- ------------------------------------------------------------- chain heads
REVOKE EXECUTE ON FUNCTION audit_chain_lock(text), audit_chain_store(text, bigint, text)
    FROM audit_db_writer, audit_db_admin, audit_db_gdpr;

-- ------------------------------------------------------ partition config
-- Rows written before 0.5.0 are not checked again: a parent that is not partitioned
-- keeps being reported by audit_partition_maintenance() until it is deleted.
CREATE FUNCTION audit_partition_config_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (
        SELECT 1
          FROM pg_catalog.pg_partitioned_table pt
          JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
         WHERE pt.partrelid = NEW.parent AND pt.partstrat = 'r' AND pt.partnatts = 1
           AND a.atttypid = 'pg_catalog.timestamptz'::pg_catalog.regtype) THEN
        RAISE EXCEPTION '% is not a table partitioned by range on one timestamptz column', NEW.parent
              USING ERRCODE = 'wrong_object_type',
                    DETAIL = 'audit_partition_config names tables that audit_partition_maintenance() keeps.',
                    HINT = 'Declare the table PARTITION BY RANGE on its timestamptz column, or convert it with audit_convert_to_partitioned().';
    END IF;
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION audit_partition_config_check() FROM PUBLIC;
COMMENT ON FUNCTION audit_partition_config_check() IS
'BEFORE INSERT OR UPDATE OF parent on audit_partition_config: refuses (42809) a parent that is not partitioned by range on one timestamptz column.';
CREATE TRIGGER audit_partition_config_check BEFORE INSERT OR UPDATE OF parent ON audit_partition_config
    FOR EACH ROW EXECUTE FUNCTION audit_partition_config_check();

-- -------------------------------------------------------------- journal
INSERT INTO audit_schema_migrations (version, name, checksum, execution_ms)
VALUES ('0.5.0', 'reliability: chain heads owner-only, partition config checked',
        pg_catalog.encode(pg_catalog.sha256(pg_catalog.pg_read_binary_file(
            (SELECT setting FROM pg_catalog.pg_config() WHERE name = 'SHAREDIR') || '/extension/audit_db--0.4.0--0.5.0.sql',
            0, 67108864, true)), 'hex'),
        (extract(epoch FROM pg_catalog.clock_timestamp()
                  - pg_catalog.current_setting('audit_db.script_started')::timestamptz) * 1000)::int);
