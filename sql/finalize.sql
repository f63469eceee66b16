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
GRANT UPDATE ("interval", premake, retention, keep_table, auto_create, auto_drop, lock_timeout,
              default_partition)
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

-- The hash strategy at hash-function speed (issue 17; src/privacy/hash_pseudonym.rs): no
-- table, so no SECURITY DEFINER or SET clause; STABLE (the key can change on reload)
-- and PARALLEL SAFE.
CREATE FUNCTION audit_pseudonymize_hash(original text) RETURNS text
    STRICT STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'audit_pseudonymize_hash_v1';

-- GDPR: pseudonymizing is for admins and the GDPR role; reversing, exporting,
-- forgetting and deleting a subject only for the GDPR role.
REVOKE ALL ON FUNCTION audit_pseudonymize(text, text), audit_depseudonymize(text),
                       audit_pseudonymize_subject(text, text), audit_export_subject(text),
                       audit_forget_subject(text), audit_delete_subject(text, boolean),
                       audit_apply_retention_policies(), audit_rotate_pseudonym_key(text)
   FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_pseudonymize(text, text), audit_apply_retention_policies()
   TO audit_db_admin, audit_db_gdpr;
GRANT EXECUTE ON FUNCTION audit_depseudonymize(text), audit_pseudonymize_subject(text, text),
                          audit_export_subject(text), audit_forget_subject(text),
                          audit_delete_subject(text, boolean), audit_rotate_pseudonym_key(text)
   TO audit_db_gdpr;
REVOKE ALL ON FUNCTION audit_pseudonymize_hash(text), audit_pseudonymize_batch(text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_pseudonymize_hash(text), audit_pseudonymize_batch(text[], text)
   TO audit_db_admin, audit_db_gdpr;

-- Integrity (0.6.0): writers append through the trigger, which touches no table;
-- sealing is for admins (and the sealer worker); verification and the digest are
-- for admins and readers.
REVOKE ALL ON FUNCTION audit_verify_integrity(timestamptz, timestamptz),
                       audit_integrity_digest(timestamptz), audit_log_seal_trigger(),
                       audit_log_append_only_trigger(), audit_seal(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_verify_integrity(timestamptz, timestamptz), audit_integrity_digest(timestamptz)
   TO audit_db_admin, audit_db_reader;
GRANT EXECUTE ON FUNCTION audit_seal(integer) TO audit_db_admin;
REVOKE ALL ON FUNCTION audit_subject_command_replay(), audit_archive_publish(text), audit_archive_prepare() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_archive_publish(text), audit_archive_prepare() TO audit_db_admin;
GRANT SELECT ON audit_chain_head, audit_chain_retired, audit_seal_block, audit_seal_retired
   TO audit_db_reader, audit_db_admin;

-- Verification of one row, PARALLEL SAFE (src/evidence/row_check.rs): audit_verify_integrity()
-- sums its answers per epoch in one aggregate query that may use parallel workers.
-- Declared VOLATILE although its answer only changes with the key ring: the planner
-- then keeps the subquery that calls it (a STABLE call would be inlined into each of
-- the ten aggregates that read its answer, and run ten times per row).
CREATE FUNCTION audit_seal_row_check(event audit_log) RETURNS int8[]
    STRICT VOLATILE PARALLEL SAFE COST 500
    LANGUAGE c AS 'MODULE_PATHNAME', 'audit_seal_row_check_v1';
REVOKE ALL ON FUNCTION audit_seal_row_check(audit_log) FROM PUBLIC;
COMMENT ON FUNCTION audit_seal_row_check(audit_log) IS
'Internal to audit_verify_integrity(): {flags, four limbs} of one audit_log row, checked as the insert trigger computed it (flags: 1 hash mismatch, 2 signature mismatch, 4 unverifiable, 8 unsigned; limbs: its element of the epoch sum). Not granted to any role.';

-- Verification's aggregate query over every row looks expensive to the planner (the
-- row check costs 500), which would JIT-compile it in the leader and in each parallel
-- worker: about 0.3 s each, for expressions that are not the work.
ALTER FUNCTION audit_verify_integrity(timestamptz, timestamptz) SET jit = off;

-- Rows the original application wrote: checked against its own hash (src/journal/original.rs).
REVOKE ALL ON FUNCTION audit_original_hash_matches(text, text, timestamptz, text, text, text, text, text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION audit_original_hash_matches(text, text, timestamptz, text, text, text, text, text, text, text) IS
'Internal to audit_verify_integrity(): whether a row''s stored hash is the original application''s SHA-256 of its values (adopted rows and rows without chain or seal); NULL when it cannot be recomputed (no hash, another algorithm, a time with sub-millisecond digits).';

-- ------------------------------------------------ unique ids (issue 14)
-- The original refused a duplicate id through its single-column primary keys, which a
-- partitioned table cannot have. audit_log: ids from the default are unique by
-- construction (src/journal/unique_id.rs); the insert trigger checks only ids a statement
-- supplied itself. error_log (ids chosen by the application): every insert looks its
-- id up across the partitions, serialised per id by an advisory lock.
ALTER TABLE audit_log ALTER COLUMN id SET DEFAULT audit_log_next_id();
REVOKE ALL ON FUNCTION audit_log_next_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_seal_anchor() FROM PUBLIC;
COMMENT ON FUNCTION audit_seal_anchor() IS
'Internal to the 0.5.0 -> 0.6.0 step and an adopting install: writes the anchor (audit_seal_block epoch 0) over the legacy chain heads and the horizon of rows without 0.6.0 evidence, signed when a key is configured; 42501 anywhere else.';
REVOKE ALL ON FUNCTION audit_adopt_rows(regclass, regclass, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION audit_adopt_rows(regclass, regclass, timestamptz) IS
'Internal to adoption (SET audit_db.adopt = ''drizzle''; CREATE EXTENSION audit_db): copies audit_log rows keeping their times (also infinity) and ids; 42501 anywhere else.';
GRANT EXECUTE ON FUNCTION audit_log_next_id() TO audit_db_writer, audit_db_admin;
COMMENT ON FUNCTION audit_log_next_id() IS
'The default of audit_log.id: the next value of audit_log_id_seq, remembered by this backend so that the insert trigger knows the id came from the sequence (only ids a statement supplies itself are looked up for duplicates).';
CREATE FUNCTION error_log_unique_id() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id IS NOT DISTINCT FROM OLD.id THEN
        RETURN NEW;
    END IF;
    -- Inserts of one id wait for each other, so the lookup sees a committed twin.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('audit_db.error_log.id'), pg_catalog.hashtext(NEW.id));
    IF EXISTS (SELECT 1 FROM @extschema@.error_log e WHERE e.id = NEW.id) THEN
        RAISE EXCEPTION 'duplicate key value violates unique constraint "error_log_pkey"'
              USING ERRCODE = 'unique_violation',
                    DETAIL = pg_catalog.format('Key (id)=(%s) already exists.', NEW.id),
                    HINT = 'error_log ids are unique across all partitions, as in the original schema.';
    END IF;
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION error_log_unique_id() FROM PUBLIC;
CREATE TRIGGER error_log_unique_id BEFORE INSERT OR UPDATE OF id ON error_log
    FOR EACH ROW EXECUTE FUNCTION error_log_unique_id();
COMMENT ON FUNCTION error_log_unique_id() IS
'Trigger of error_log: refuses (23505) an id that another row of any partition has, as the original''s single-column primary key did.';

-- ----------------------------------------------------------- integrity triggers
CREATE TRIGGER audit_log_integrity BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_seal_trigger();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only_trigger();
CREATE TRIGGER audit_subject_command_replay BEFORE INSERT ON audit_subject_command
    FOR EACH ROW EXECUTE FUNCTION audit_subject_command_replay();
ALTER TABLE audit_subject_command ENABLE REPLICA TRIGGER audit_subject_command_replay;
-- The apply worker runs with an empty search_path; the operations name their tables.
ALTER FUNCTION audit_subject_command_replay() SET search_path = pg_catalog, pg_temp;
CREATE FUNCTION audit_log_no_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only'
          USING ERRCODE = 'insufficient_privilege',
                HINT = 'Rows leave audit_log only through retention (audit_drop_expired_partitions) and the GDPR functions.';
END
$fn$;
REVOKE ALL ON FUNCTION audit_log_no_truncate() FROM PUBLIC;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_no_truncate();

-- ------------------------------------------------------- partition guard
-- audit_db 0.6.0: rows leave audit_log only through audit_db (which records them for
-- the integrity trail first). DROP TABLE of a partition drops its clone of the
-- audit_log_integrity trigger: sql_drop refuses it. DETACH leaves the table with its
-- own TRUNCATE guard but no parent: ddl_command_end refuses it. TRUNCATE of a single
-- partition (statement triggers are not cloned) meets audit_log_no_truncate, which
-- ddl_command_end adds to every partition. Only DROP EXTENSION is let through.
CREATE FUNCTION audit_log_guard_ddl() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    part regclass;
BEGIN
    -- Catalog reads first: audit_internal_write() (not executable by PUBLIC) is only
    -- reached by a DETACH of an audit_log partition, which needs audit_log's owner.
    SELECT t.tgrelid::regclass INTO part FROM pg_catalog.pg_trigger t
     WHERE t.tgfoid = '@extschema@.audit_log_no_truncate()'::pg_catalog.regprocedure
       AND t.tgrelid <> '@extschema@.audit_log'::regclass
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h
                        WHERE h.inhrelid = t.tgrelid AND h.inhparent = '@extschema@.audit_log'::regclass)
     LIMIT 1;
    IF part IS NOT NULL THEN
        IF NOT @extschema@.audit_internal_write() THEN
            RAISE EXCEPTION 'DETACH PARTITION of %, a partition of audit_log, is refused', part
                  USING ERRCODE = 'insufficient_privilege',
                        DETAIL = 'Rows leave audit_log only through audit_db, which records them for the integrity trail first.',
                        HINT = 'Use audit_drop_expired_partitions(..., keep_table => true) or audit_partition_maintenance().';
        END IF;
    END IF;
    -- Only the owner of audit_log (or a superuser) can add a partition, so only they
    -- ever reach this call; anyone else's CREATE / ALTER TABLE passes untouched.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h
                WHERE h.inhparent = '@extschema@.audit_log'::regclass
                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                   WHERE t.tgrelid = h.inhrelid
                                     AND t.tgfoid = '@extschema@.audit_log_no_truncate()'::pg_catalog.regprocedure)) THEN
        PERFORM @extschema@.audit_log_guard_truncate();
    END IF;
END
$fn$;

CREATE FUNCTION audit_log_guard_drop() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    victim text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects() WHERE object_type = 'extension') THEN
        RETURN;
    END IF;
    SELECT pg_catalog.substr(object_identity, 24) INTO victim
      FROM pg_catalog.pg_event_trigger_dropped_objects()
     WHERE object_type = 'trigger' AND object_identity LIKE 'audit_log\_integrity on %'
     LIMIT 1;
    -- (Nested: audit_internal_write() is reached only by a DROP of an audit_log partition.)
    IF victim IS NOT NULL THEN
        IF NOT @extschema@.audit_internal_write() THEN
            RAISE EXCEPTION '% of %, a partition of audit_log, is refused', tg_tag, victim
                  USING ERRCODE = 'insufficient_privilege',
                        DETAIL = 'Rows leave audit_log only through audit_db, which records them for the integrity trail first.',
                        HINT = 'Use audit_drop_expired_partitions() or audit_partition_maintenance() (retention), or the GDPR functions.';
        END IF;
    END IF;
END
$fn$;

REVOKE ALL ON FUNCTION audit_log_guard_truncate(), audit_log_guard_ddl(), audit_log_guard_drop(),
                       audit_internal_write() FROM PUBLIC;
CREATE EVENT TRIGGER audit_log_guard_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION audit_log_guard_ddl();
CREATE EVENT TRIGGER audit_log_guard_drop ON sql_drop EXECUTE FUNCTION audit_log_guard_drop();
SELECT audit_log_guard_truncate();

-- -------------------------------------------------------- documentation
COMMENT ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) IS
'Creates the partitions of a range-partitioned audit table for the period containing reference_time (default now()) and premake periods ahead (NULL = the parent''s audit_partition_config row, else 6), with the row''s interval (daily, weekly or monthly; default monthly) and UTC midnight bounds, named <parent>_YYYY_MM, <parent>_YYYY_MM_DD or <parent>_IYYY_wIW. Rows already in the DEFAULT partition for a new range are moved into it. Never takes ACCESS EXCLUSIVE on the parent. Idempotent: returns the names it created, none on a second call.';
COMMENT ON FUNCTION audit_drop_expired_partitions(regclass, interval, boolean, timestamptz) IS
'Drops, or with keep_table detaches and renames to <name>_detached, every partition whose whole range ends at or before reference_time - retention (NULL retention = the config row; none configured = nothing). Never the DEFAULT partition nor one open-ended above. Returns the partitions removed.';
COMMENT ON FUNCTION audit_partition_maintenance(timestamptz) IS
'Creates then drops partitions for every row of audit_partition_config; the call to schedule with pg_cron. One run at a time (advisory lock; a second returns at once), nothing on a hot standby. Locks are taken in short attempts (audit_db.lock_attempt_timeout, 50 ms) retried with backoff within the row''s lock_timeout, each attempt in a subtransaction that releases what it locked when it gives up: writers of a parent wait at most one attempt, also behind a long reader or pg_dump. A partition not locked in time is reported as skipped (overdue, with a WARNING, once it is more than a day past its retention) and done by a later run. Creation builds each new table with its indexes before any lock. Into a parent with a DEFAULT partition it then holds that parent''s writers off (SHARE ROW EXCLUSIVE on the parent alone, ACCESS EXCLUSIVE on the DEFAULT partition) from the attach to the end of the run, so it comes after sealing and every later lock gets one attempt; a parent without DEFAULT partition (default_partition = false: its rows are moved into partitions, then it is dropped, action default_dropped) takes only SHARE UPDATE EXCLUSIVE, which no writer, reader or pg_dump blocks. The drops, which need ACCESS EXCLUSIVE on the parents, run last in a single DROP TABLE statement.';
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

COMMENT ON FUNCTION audit_pseudonymize(text, text) IS
'Pseudonym of a value: hash (pseudo- + HMAC-SHA256 hex, one-way, no mapping), token (pseudo- + 32 hex random, one mapping per original found through a keyed blind index) or encryption (pseudo-enc-..., AES-256-GCM with a synthetic nonce, deterministic). Keys come from audit_db.key_file, never from SQL. Values starting with pseudo, system, security or integrity are returned unchanged; NULL gives NULL.';
COMMENT ON FUNCTION audit_pseudonymize_hash(text) IS
'The hash pseudonym of a value, as audit_pseudonymize(x, ''hash''): pseudo- + 64 hex of HMAC-SHA256 under the current key; values starting with pseudo, system, security or integrity unchanged; NULL gives NULL. STABLE and PARALLEL SAFE, no SECURITY DEFINER: use it over large tables.';
COMMENT ON FUNCTION audit_pseudonymize_batch(text[], text) IS
'audit_pseudonymize of every element of an array, in order (NULL elements stay NULL): token and encryption mappings of the whole array are looked up with one statement and the new ones written with one more.';
COMMENT ON FUNCTION audit_depseudonymize(text) IS
'The original value of a token or encryption pseudonym (hash pseudonyms are one-way: 22023); unknown or forgotten pseudonyms: P0002; tampered data or a wrong key: 22000. Logs a gdpr.data.depseudonymize event (never the plaintext). For audit_db_gdpr only.';
COMMENT ON FUNCTION audit_pseudonymize_subject(text, text) IS
'audit_pseudonymize_subject(ARRAY[principal_id], strategy): the subject at every place of audit_subject_map (as actor, target and mentioned in audit_log, and in the other tables); returns the audit_log rows changed.';
COMMENT ON FUNCTION audit_export_subject(text) IS
'audit_export_subject(ARRAY[principal_id]): every row where the subject appears, as a jsonb array of {table, column, role, row}; logs gdpr.data.export.';
COMMENT ON FUNCTION audit_forget_subject(text) IS
'Crypto-shredding: deletes the principal''s pseudonym mappings, so no function can recover the identity while the trail stays; returns the mappings deleted; logs gdpr.data.delete.';
COMMENT ON FUNCTION audit_delete_subject(text, boolean) IS
'audit_delete_subject(ARRAY[principal_id], preserve_compliance): deletes the principal''s own audit_log events (with preserve_compliance the compliance actions stay, pseudonymized by hash) and pseudonymizes or deletes every other place of audit_subject_map; returns the audit_log rows deleted and the compliance rows kept.';
COMMENT ON FUNCTION audit_apply_retention_policies() IS
'Applies the active audit_retention_policy rows: archives (archived_at) rows of each data_classification older than archive_after_days (or retention_days) and deletes archived rows older than delete_after_days; logs gdpr.retention.apply.';
COMMENT ON FUNCTION audit_rotate_pseudonym_key(text) IS
'Re-encrypts every mapping row made under old_key_id with the current (last) key of audit_db.key_file and recomputes its blind index; returns the rows rotated.';

COMMENT ON FUNCTION audit_log_seal_trigger() IS
'BEFORE INSERT on audit_log: computes row_hash (audit_db.event.v2 canonical encoding, SHA-256; the application''s hash and hash_algorithm are kept as written and covered), signs it (HMAC-SHA256 under the integrity key of audit_db.key_file; NULL without a key) and tags the row with the open seal epoch. Takes no lock and touches no table.';
COMMENT ON FUNCTION audit_log_append_only_trigger() IS
'BEFORE UPDATE OR DELETE on audit_log: refuses (42501) every change except those made by audit_db''s own retention and GDPR functions.';
COMMENT ON FUNCTION audit_log_no_truncate() IS
'BEFORE TRUNCATE on audit_log: refused (42501).';
COMMENT ON FUNCTION audit_verify_integrity(timestamptz, timestamptz) IS
'Recomputes row hash and signature of every audit_log row in the range with the insert trigger''s code; over the whole range also checks every sealed block (chain, signature, row count and sum, retired rows) and the chains of rows written before 0.6.0. chain_breaks counts broken or mismatched blocks and chain links (deleted, added or moved rows); returns the first bad id, unsealed and legacy counts, and records the run in audit_integrity_log (not on a standby).';
COMMENT ON FUNCTION audit_integrity_digest(timestamptz) IS
'The newest sealed block up to a time (epoch, block hash, rows), block and retired counts, as jsonb, to store outside the database and compare later: catches a rewrite of the whole chain.';
COMMENT ON FUNCTION audit_internal_write() IS
'True while audit_db itself removes audit_log rows or partitions (retention, erasure); read by the partition guard event triggers. Backend memory only: no statement or setting turns it on.';
COMMENT ON FUNCTION audit_log_guard_truncate() IS
'Adds the internal statement trigger audit_log_no_truncate to every partition of audit_log lacking it (statement triggers are not cloned to partitions; internal, so pg_dump leaves it out); returns how many it added.';
COMMENT ON FUNCTION audit_log_guard_ddl() IS
'Event trigger (ddl_command_end, CREATE/ALTER TABLE): refuses (42501) a DETACH of an audit_log partition not made by audit_db, and guards new partitions against TRUNCATE.';
COMMENT ON FUNCTION audit_log_guard_drop() IS
'Event trigger (sql_drop): refuses (42501) DROP of an audit_log partition not made by audit_db; DROP EXTENSION passes.';
COMMENT ON FUNCTION audit_seal(integer) IS
'Seals audit_log: closes the open epoch, waits up to wait_ms for transactions still writing into closed epochs, and writes one signed block per epoch. A no-op on a standby and on an archive (its blocks come from the primary); one sealer per database at a time. The background worker (audit_db.sealer_database, audit_db.seal_interval) and audit_partition_maintenance() call it too.';
COMMENT ON FUNCTION audit_subject_command_replay() IS
'BEFORE INSERT on audit_subject_command, enabled for replication only: on an archive, runs the primary''s subject operation (pseudonymize, delete, forget) over the archive''s rows, then drops the command row.';
COMMENT ON FUNCTION audit_archive_publish(text) IS
'On the primary: creates (or brings back in line) the publications an archive subscribes to: <publication> (audit_log, audit_seal_block and audit_subject_command, inserts only, via the partition root) and <publication>_mappings (pseudonym_mapping and pseudonym_forgotten, every change). Returns their names.';
COMMENT ON FUNCTION audit_archive_prepare() IS
'On a new archive database: checks that it holds no events or blocks of its own and that the root key file is loaded, keeps a DEFAULT partition on audit_log for periods without a partition, and returns the CREATE SUBSCRIPTION to run next.';

-- ------------------------------------------------------- the subject map (issue 18)
INSERT INTO audit_subject_map (relation, column_name, role, kind, on_erasure, builtin, note) VALUES
    ('audit_log', 'principal_id', 'actor', 'column', 'delete_row', true,
     'Erasure deletes the subject''s own events; with preserve_compliance the compliance actions stay, pseudonymized.'),
    ('audit_log', 'target_resource_id', 'target', 'column', 'pseudonymize', true,
     'Someone else''s event about the subject: kept, the target pseudonymized. Rows written before 0.6.0 keep it (their hash covers it).'),
    ('audit_log', 'details', 'mentioned', 'details_keys', 'pseudonymize', true,
     'String values of the personal keys recorded in each row (audit_db.personal_details_keys when it was written).'),
    ('error_log', 'user_id', 'actor', 'column', 'delete_row', true, NULL),
    ('error_log', 'session_id', 'actor', 'column', 'pseudonymize', true, 'Found only when the session id is given as an identifier.'),
    ('error_aggregation', 'affected_users', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('alerts', 'acknowledged_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('alerts', 'resolved_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('config_change_event', 'changed_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('audit_integrity_log', 'verified_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('audit_preset', 'created_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('audit_preset', 'updated_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('audit_retention_policy', 'created_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('report_templates', 'created_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('report_templates', 'updated_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('scheduled_reports', 'created_by', 'actor', 'column', 'pseudonymize', true, NULL),
    ('scheduled_reports', 'updated_by', 'actor', 'column', 'pseudonymize', true, NULL),
    -- jsonb values (kind json_array: every string at any depth, in arrays and objects;
    -- keys and free text inside strings are not matched; issue 26)
    ('error_log', 'context', 'mentioned', 'json_array', 'pseudonymize', true, 'Strings equal to an identifier, at any depth.'),
    ('error_aggregation', 'samples', 'mentioned', 'json_array', 'pseudonymize', true, 'Sample errors as the application stored them.'),
    ('alerts', 'metadata', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('config_change_event', 'previous_value', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('config_change_event', 'new_value', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('scheduled_reports', 'criteria', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('scheduled_reports', 'delivery', 'mentioned', 'json_array', 'pseudonymize', true, 'Recipients.'),
    ('report_templates', 'default_criteria', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('report_executions', 'delivery_attempts', 'mentioned', 'json_array', 'pseudonymize', true, 'Recipients.'),
    ('audit_integrity_log', 'verification_details', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('audit_preset', 'default_values', 'mentioned', 'json_array', 'pseudonymize', true, NULL),
    ('archive_dlq_event', 'original_event', 'mentioned', 'json_array', 'pseudonymize', true, 'A failed event as the application serialized it.');

-- One rule for what a place may be, checked when it is declared and again each time
-- a subject function uses it (the table may have changed since): a permanent
-- ordinary or partitioned table whose every descendant is one too (a view, a foreign
-- or temporary table runs code or lives in one session: issue 25), and a column of
-- the kind's type.
CREATE FUNCTION audit_subject_place_check(relation regclass, column_name text, kind text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bad regclass;
    col_type regtype;
    tree oid[];
BEGIN
    -- The table, its partitions and its inheritance children.
    WITH RECURSIVE t(oid) AS (
        SELECT relation::oid
        UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN t ON i.inhparent OPERATOR(pg_catalog.=) t.oid)
    SELECT pg_catalog.array_agg(t.oid) INTO tree FROM t;
    SELECT c.oid::regclass INTO bad FROM pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) ANY (tree)
       AND (c.relkind NOT IN ('r', 'p') OR c.relpersistence OPERATOR(pg_catalog.=) 't')
     LIMIT 1;
    IF bad IS NULL THEN
        -- Export reads whole rows (to_jsonb), which calls a type's cast to json: only
        -- PostgreSQL's own types, whose casts are its own code.
        SELECT a.attrelid::regclass INTO bad FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_type ty ON ty.oid OPERATOR(pg_catalog.=) a.atttypid
         WHERE a.attrelid OPERATOR(pg_catalog.=) ANY (tree)
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
           AND (ty.typnamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::regnamespace
                OR (ty.typelem OPERATOR(pg_catalog.<>) 0 AND NOT EXISTS (
                        SELECT 1 FROM pg_catalog.pg_type el WHERE el.oid OPERATOR(pg_catalog.=) ty.typelem
                           AND el.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::regnamespace)))
         LIMIT 1;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION '% has a column of a type that is not PostgreSQL''s own', bad
                  USING ERRCODE = 'wrong_object_type',
                        DETAIL = pg_catalog.format('audit_subject_map place %s.%I: exporting a row casts every column to json, and a user-defined type''s cast runs its owner''s code.', relation, column_name),
                        HINT = 'Declare a table whose columns are of built-in types (domains, enums and composite types included: they are user-defined).';
        END IF;
    ELSE
        RAISE EXCEPTION '% is not a permanent table', bad
              USING ERRCODE = 'wrong_object_type',
                    DETAIL = pg_catalog.format('audit_subject_map place %s.%I: views, foreign, materialized and temporary tables are refused, also as partitions or children.', relation, column_name),
                    HINT = 'Declare the permanent table that holds the identifiers.';
    END IF;
    SELECT a.atttypid::regtype INTO col_type FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) relation AND a.attname OPERATOR(pg_catalog.=) column_name
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF col_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', column_name, relation
              USING ERRCODE = 'undefined_column';
    END IF;
    IF (kind OPERATOR(pg_catalog.=) 'column' AND col_type NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype))
       OR (kind OPERATOR(pg_catalog.=) 'json_array' AND col_type OPERATOR(pg_catalog.<>) 'jsonb'::regtype) THEN
        RAISE EXCEPTION 'column "%" of relation % is %, not what kind ''%'' needs', column_name, relation, col_type, kind
              USING ERRCODE = 'datatype_mismatch',
                    HINT = 'kind ''column'' takes text, varchar or char columns; ''json_array'' a jsonb array of identifiers.';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION audit_subject_place_check(regclass, text, text) FROM PUBLIC;
-- (the trigger of audit_subject_map runs as the audit_db_gdpr member declaring a place)
GRANT EXECUTE ON FUNCTION audit_subject_place_check(regclass, text, text) TO audit_db_gdpr;

CREATE FUNCTION audit_subject_map_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.builtin THEN
        RAISE EXCEPTION 'the builtin places of audit_subject_map cannot be changed'
              USING ERRCODE = 'insufficient_privilege',
                    DETAIL = pg_catalog.format('%s.%I is where audit_db itself looks for a subject.', OLD.relation, OLD.column_name),
                    HINT = 'Add rows for your own tables instead.';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF NEW.builtin OR NEW.kind = 'details_keys' THEN
        RAISE EXCEPTION 'only audit_db declares builtin and details_keys places'
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Insert with builtin = false and kind ''column'' or ''json_array''; personal details keys are set with audit_db.personal_details_keys.';
    END IF;
    -- audit_log's places are fixed (its row hash depends on them); the other members
    -- of the extension hold its own state, except the original's tables.
    IF NEW.relation = '@extschema@.audit_log'::regclass
       OR (EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                    WHERE e.extname = 'audit_db' AND d.classid = 'pg_catalog.pg_class'::regclass
                      AND d.objid = NEW.relation AND d.deptype = 'e')
           AND (SELECT relname FROM pg_catalog.pg_class WHERE oid = NEW.relation)
               NOT IN ('error_log', 'error_aggregation', 'alerts', 'config_change_event', 'audit_integrity_log',
                       'audit_preset', 'audit_retention_policy', 'report_templates', 'scheduled_reports',
                       'report_executions', 'archive_storage', 'archive_dlq_event')) THEN
        RAISE EXCEPTION 'audit_subject_map cannot point at %', NEW.relation
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'audit_log''s places are builtin; audit_db''s own tables hold no person identifiers.';
    END IF;
    -- The subject functions run as the extension's owner: they may only touch what
    -- the one declaring the place could read, change and delete itself.
    -- (has_table_privilege with a list is true if any one is held: each on its own.)
    IF NOT (pg_catalog.has_table_privilege(NEW.relation, 'SELECT')
            AND pg_catalog.has_table_privilege(NEW.relation, 'UPDATE')
            AND pg_catalog.has_table_privilege(NEW.relation, 'DELETE')) THEN
        RAISE EXCEPTION 'permission denied for table %', NEW.relation
              USING ERRCODE = 'insufficient_privilege',
                    DETAIL = 'Declaring a place needs SELECT, UPDATE and DELETE on its table.';
    END IF;
    PERFORM @extschema@.audit_subject_place_check(NEW.relation, NEW.column_name, NEW.kind);
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION audit_subject_map_check() FROM PUBLIC;
CREATE TRIGGER audit_subject_map_check BEFORE INSERT OR UPDATE OR DELETE ON audit_subject_map
    FOR EACH ROW EXECUTE FUNCTION audit_subject_map_check();
GRANT SELECT ON audit_subject_map TO audit_db_reader, audit_db_admin, audit_db_gdpr;
GRANT INSERT, UPDATE, DELETE ON audit_subject_map TO audit_db_gdpr;

-- Streams a subject's rows (a set-returning function in materialize mode: PostgreSQL
-- spills the rows to disk past work_mem, so a large subject does not grow memory).
CREATE FUNCTION audit_subject_rows(identifiers text[])
RETURNS TABLE(table_name text, column_name text, role text, row_data jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    names text[] := @extschema@.audit_subject_names(identifiers);
    place record;
BEGIN
    RETURN QUERY
        SELECT 'audit_log'::text,
               CASE WHEN a.principal_id = ANY(names) THEN 'principal_id'
                    WHEN a.target_resource_id = ANY(names) THEN 'target_resource_id' ELSE 'details' END,
               CASE WHEN a.principal_id = ANY(names) THEN 'actor'
                    WHEN a.target_resource_id = ANY(names) THEN 'target' ELSE 'mentioned' END,
               pg_catalog.to_jsonb(a)
          FROM @extschema@.audit_log a
         WHERE a.principal_id = ANY(names) OR a.target_resource_id = ANY(names)
            -- (details may be any jsonb a writer stored: a string equal to a name at any
            -- depth, in arrays and objects, is a mention)
            OR @extschema@.audit_json_mentions(a.details::text, names);
    FOR place IN
        SELECT m.relation, m.column_name, m.role, m.kind, m.builtin FROM @extschema@.audit_subject_map m
         WHERE m.relation <> '@extschema@.audit_log'::regclass
         ORDER BY m.relation::text, m.column_name
    LOOP
        IF NOT place.builtin THEN
            PERFORM @extschema@.audit_subject_place_check(place.relation, place.column_name, place.kind);
        END IF;
        -- Read as the table's owner (audit_subject_place_rows); named relative to the
        -- extension's schema, as its own tables always were.
        RETURN QUERY
            SELECT (SELECT CASE WHEN c.relnamespace = (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                                                        WHERE e.extname = 'audit_db')
                                THEN pg_catalog.quote_ident(c.relname) ELSE place.relation::text END
                      FROM pg_catalog.pg_class c WHERE c.oid = place.relation),
                   place.column_name::text, place.role, r
              FROM @extschema@.audit_subject_place_rows(place.relation, place.column_name, place.kind, names) r;
    END LOOP;
END
$fn$;
-- (audit_subject_rows calls it as the extension's owner; nobody else may.)
REVOKE ALL ON FUNCTION audit_subject_place_rows(regclass, text, text, text[]) FROM PUBLIC;
COMMENT ON FUNCTION audit_subject_place_rows(regclass, text, text, text[]) IS
'The rows of one place of audit_subject_map that name the subject (names), as jsonb, read as the role that called audit_subject_rows, in a restricted context (its privileges and row-level security apply; no code of the table runs as the extension''s owner); audit_db''s own tables as the extension''s owner. Called by audit_subject_rows; executable by nobody else.';
REVOKE ALL ON FUNCTION audit_subject_rows(text[]), audit_subject_names(text[]),
                       audit_pseudonymize_subject(text[], text), audit_export_subject(text[]),
                       audit_forget_subject(text[]), audit_delete_subject(text[], boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_subject_rows(text[]), audit_subject_names(text[]),
                          audit_pseudonymize_subject(text[], text), audit_export_subject(text[]),
                          audit_forget_subject(text[]), audit_delete_subject(text[], boolean)
   TO audit_db_gdpr;
-- Identifiers inside jsonb at any depth (issue 26): the subject functions' own
-- helpers; a declared place is searched as the calling audit_db_gdpr member.
REVOKE ALL ON FUNCTION audit_json_mentions(text, text[]), audit_json_replace(text, text[], text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_json_mentions(text, text[]), audit_json_replace(text, text[], text[], text[])
   TO audit_db_gdpr;
COMMENT ON FUNCTION audit_json_mentions(text, text[]) IS
'Whether any string value of a JSON text, at any depth, in arrays and objects (keys left out), equals one of names. No depth limit. Used by the subject functions for jsonb places.';
COMMENT ON FUNCTION audit_json_replace(text, text[], text[], text[]) IS
'A JSON text with every string value equal to originals[i] replaced by pseudonyms[i]: at any depth when top_keys is NULL, else only in the top-level members named by top_keys; everything else byte for byte. No depth limit. Used by the subject functions for jsonb places.';
-- JIT compiles the subject statements' wide expressions for longer than they run
-- (1.9 s of a 3.8 s pseudonymization of 50,000 rows): off inside these functions.
ALTER FUNCTION audit_pseudonymize_subject(text, text) SET jit = off;
ALTER FUNCTION audit_pseudonymize_subject(text[], text) SET jit = off;
ALTER FUNCTION audit_delete_subject(text, boolean) SET jit = off;
ALTER FUNCTION audit_delete_subject(text[], boolean) SET jit = off;
ALTER FUNCTION audit_export_subject(text) SET jit = off;
ALTER FUNCTION audit_export_subject(text[]) SET jit = off;
ALTER FUNCTION audit_subject_rows(text[]) SET jit = off;
COMMENT ON FUNCTION audit_subject_place_check(regclass, text, text) IS
'The rule for a place of audit_subject_map, checked when it is declared and each time a subject function uses it: a permanent ordinary or partitioned table whose partitions and children are too (42809 for a view, foreign, materialized or temporary table), and an existing column (42703) of the kind''s type (42804).';
COMMENT ON FUNCTION audit_subject_map_check() IS
'Trigger of audit_subject_map: builtin places cannot be changed (42501); a new place must be a column of a table the caller may SELECT, UPDATE and DELETE (42501), not audit_log or audit_db''s own state, existing (42703) and of the kind''s type (42804).';
COMMENT ON FUNCTION audit_subject_rows(text[]) IS
'GDPR access request, streamed: one row per place where the subject appears (table, column, role actor/target/mentioned, the row as jsonb), in audit_log under its identifiers and pseudonyms, then in every table of audit_subject_map. For audit_db_gdpr. CSV per table: \copy (SELECT r.* FROM audit_subject_rows(ARRAY[...]) s, jsonb_populate_record(NULL::audit_log, s.row_data) r WHERE s.table_name = ''audit_log'') TO ''audit_log.csv'' CSV HEADER.';
COMMENT ON FUNCTION audit_subject_names(text[]) IS
'The names a subject may appear under: its identifiers, their hash pseudonyms under every key of the ring, and their token and encryption pseudonyms. For audit_db_gdpr.';
COMMENT ON FUNCTION audit_pseudonymize_subject(text[], text) IS
'Pseudonymizes a subject given by one or more identifiers at every place of audit_subject_map: in audit_log as actor (principal and personal details), target and mentioned (personal details values), in the other tables as declared. One transaction; returns one row per place (table, column, action, rows); logs gdpr.data.pseudonymize.';
COMMENT ON FUNCTION audit_export_subject(text[]) IS
'GDPR access request: audit_subject_rows as one jsonb array of {table, column, role, row}; logs gdpr.data.export. Use audit_subject_rows for large subjects (streamed).';
COMMENT ON FUNCTION audit_forget_subject(text[]) IS
'Crypto-shredding for every identifier of a subject: deletes their pseudonym mappings (keeping, per key, only the reference each pseudonym''s original had in the row hashes, so those rows stay verifiable); returns one row (pseudonym_mapping, original_id, deleted, rows); logs gdpr.data.delete.';
COMMENT ON FUNCTION audit_delete_subject(text[], boolean) IS
'Right to erasure for a subject given by one or more identifiers: deletes their own audit_log events (with preserve_compliance the compliance actions stay, pseudonymized by hash), pseudonymizes by hash every other place that names them (someone else''s event about them, details values, the other tables), or deletes the rows where audit_subject_map says delete_row. One transaction; returns one row per place; logs gdpr.data.delete.';

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
-- The builtin places come with the install script; only a DPO's own are data.
SELECT pg_catalog.pg_extension_config_dump('audit_subject_map', 'WHERE NOT builtin');

-- ------------------------------------------------- restoring partition indexes
-- A restore recreates the extension with its parents stripped of their indexes
-- (below), then pg_dump's statements create each partition's indexes and finally
-- ALTER INDEX <parent index> ATTACH PARTITION <partition index>. Just before the first
-- of those, this trigger puts the parents' indexes back (audit_finish_restore(): they
-- attach the partitions' matching indexes), so the ATTACH statements find them and
-- have nothing left to do. At any other time it costs two catalog lookups.
CREATE FUNCTION audit_restore_indexes_trigger() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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

-- Creation and retention in two transactions (issue 19): a failure of one never rolls
-- back the other. A procedure, for pg_cron: CALL audit_maintain(). No SET clause (a
-- procedure with one cannot commit); every name is qualified.
CREATE PROCEDURE audit_maintain(reference_time timestamptz DEFAULT now())
LANGUAGE plpgsql
AS $proc$
DECLARE
    step record;
    phase text;
BEGIN
    FOREACH phase IN ARRAY ARRAY['create', 'retain'] LOOP
        FOR step IN SELECT * FROM @extschema@.audit_partition_maintenance_phase(phase, reference_time) LOOP
            RAISE NOTICE 'audit_db maintenance: % % % %', coalesce(step.parent::text, '-'), step.action,
                         coalesce(step.partition, '-'), coalesce(step.detail, '');
        END LOOP;
        COMMIT;
    END LOOP;
END
$proc$;
REVOKE ALL ON FUNCTION audit_partition_maintenance_phase(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON PROCEDURE audit_maintain(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_partition_maintenance_phase(text, timestamptz) TO audit_db_admin;
GRANT EXECUTE ON PROCEDURE audit_maintain(timestamptz) TO audit_db_admin;
COMMENT ON FUNCTION audit_partition_maintenance_phase(text, timestamptz) IS
'One phase of audit_partition_maintenance(): ''create'' (repairs after a restore, creation, sealing) or ''retain'' (drops and detaches); last_run_result says which. For CALL audit_maintain(), which commits between them.';
COMMENT ON PROCEDURE audit_maintain(timestamptz) IS
'Partition maintenance in two transactions, creation then retention, so that one never rolls back the other; each step as a NOTICE. Schedule it with pg_cron: CALL audit_maintain(). Not inside a transaction block (it commits).';

-- ------------------------------------------ the original's partition functions
-- Thin wrappers with the original package's names and signatures, so a scheduler
-- written for it keeps working (docs/migrating.md maps every original operation).
CREATE FUNCTION create_audit_log_partitions() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT pg_catalog.count(*) FROM @extschema@.audit_create_partitions(
        '@extschema@.audit_log'::regclass,
        GREATEST(6, (SELECT c.premake FROM @extschema@.audit_partition_config c
                      WHERE c.parent = '@extschema@.audit_log'::regclass)));
$fn$;
CREATE FUNCTION drop_old_audit_partitions(retention_days integer DEFAULT 2555) RETURNS text[]
LANGUAGE sql STRICT SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT coalesce(pg_catalog.array_agg(d ORDER BY d), '{}')
      FROM @extschema@.audit_drop_expired_partitions('@extschema@.audit_log'::regclass,
                                                     pg_catalog.make_interval(days => retention_days)) d;
$fn$;
CREATE FUNCTION get_audit_partition_stats()
RETURNS TABLE(partition_name text, record_count bigint, size_bytes bigint, size_pretty text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT c.relname::text, coalesce(p.row_estimate, 0)::bigint, coalesce(p.total_bytes, 0)::bigint,
           pg_catalog.pg_size_pretty(coalesce(p.total_bytes, 0)::bigint)
      FROM @extschema@.audit_partitions('@extschema@.audit_log'::regclass) p
      JOIN pg_catalog.pg_class c ON c.oid = p.partition
     ORDER BY 1;
$fn$;
REVOKE ALL ON FUNCTION create_audit_log_partitions(), drop_old_audit_partitions(integer),
                       get_audit_partition_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_audit_log_partitions(), drop_old_audit_partitions(integer) TO audit_db_admin;
GRANT EXECUTE ON FUNCTION get_audit_partition_stats() TO audit_db_reader, audit_db_admin;
COMMENT ON FUNCTION create_audit_log_partitions() IS
'The original package''s name: audit_create_partitions(''audit_log'') with at least 6 months ahead (the original made this month and the next 6). Returns nothing, as the original did.';
COMMENT ON FUNCTION drop_old_audit_partitions(integer) IS
'The original package''s name: audit_drop_expired_partitions(''audit_log'', retention_days days), returning the dropped partitions as an array. Unlike the original it drops only partitions entirely older than the cutoff, records each as an integrity checkpoint, and refuses a retention of zero or less (22023).';
COMMENT ON FUNCTION get_audit_partition_stats() IS
'The original package''s name and columns: one row per audit_log partition (name, estimated rows, bytes with indexes and TOAST, pretty size), from audit_partitions(''audit_log'').';

-- ------------------------------- config rows, first partitions, the journal
-- pg_dump scripts (plain, and pg_restore) set row_security = off before they create
-- the extension (CREATE EXTENSION itself turns check_function_bodies off, so that
-- one cannot tell); audit_db.restoring = on says the same explicitly. Then the dump brings the config
-- rows, the partitions with their rows and the journal: creating them here would
-- collide with it.
DO $install$
DECLARE
    restoring boolean := pg_catalog.current_setting('row_security') = 'off'
                         OR coalesce(pg_catalog.current_setting('audit_db.restoring', true), '') = 'on';
    version text := (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'audit_db');
    script text;
    adopted boolean := coalesce(pg_catalog.current_setting('audit_db.adopt', true), '') = 'drizzle';
    t text;
    old regclass;
    new regclass;
    cols text;
    oldest timestamptz;
    months int;
    copied bigint;
    expected bigint;
    seq record;
    idx record;
    adopted_tables text[] := '{}';
    same_columns boolean;
    cutoff timestamptz;
    shell regclass;
    legacy regclass;
    extra text;
BEGIN
    -- Names and operators resolve in pg_catalog only for the rest of this script: the
    -- extension's schema may hold objects a non-superuser planted (issue 25).
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF restoring THEN
        -- pg_dump recreates each dated partition, attaches it, then adds its primary key
        -- and indexes; with the parents' indexes in place ATTACH would create those
        -- already and the dump's statements would fail. So the parents lose their
        -- indexes here, and the event trigger above (or audit_finish_restore(), also
        -- run by maintenance) puts them back, attaching the restored partitions' ones.
        FOR idx IN
            SELECT i.oid::regclass AS index, c.oid::regclass AS tbl, k.conname
              FROM pg_catalog.pg_depend d
              JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db'
              JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind = 'p'
              JOIN pg_catalog.pg_index x ON x.indrelid = c.oid
              JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
              LEFT JOIN pg_catalog.pg_constraint k ON k.conindid = i.oid AND k.conrelid = c.oid
             WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
        LOOP
            IF idx.conname IS NOT NULL THEN
                EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', idx.tbl, idx.conname);
            ELSE
                EXECUTE pg_catalog.format('DROP INDEX %s', idx.index);
            END IF;
        END LOOP;
        RAISE WARNING 'audit_db: restoring from a dump: no partitions, config rows or journal entry created'
              USING HINT = 'The indexes of audit_log and error_log come back when the dump attaches its partitions'' indexes; if it has none, run SELECT audit_finish_restore();';
        RETURN;
    END IF;
    INSERT INTO @extschema@.audit_partition_config (parent) VALUES ('@extschema@.audit_log'), ('@extschema@.error_log');
    -- Every argument typed: an untyped literal would let an overload planted in the
    -- extension's schema win (issue 25: CREATE EXTENSION made its planter superuser).
    PERFORM @extschema@.audit_create_partitions('@extschema@.audit_log'::pg_catalog.regclass, NULL::pg_catalog.int4, pg_catalog.now());
    PERFORM @extschema@.audit_create_partitions('@extschema@.error_log'::pg_catalog.regclass, NULL::pg_catalog.int4, pg_catalog.now());
    IF adopted THEN
        -- Adoption, step 2 (step 1 in schema.sql renamed the Drizzle tables).
        FOREACH t IN ARRAY ARRAY['scheduled_reports', 'audit_log', 'error_log', 'audit_integrity_log',
                                 'audit_retention_policy', 'error_aggregation', 'alerts', 'report_executions',
                                 'report_templates', 'audit_preset', 'archive_storage', 'archive_dlq_event',
                                 'config_change_event', 'pseudonym_mapping']
        LOOP
            old := pg_catalog.to_regclass('@extschema@.' || pg_catalog.quote_ident(t || '__drizzle'));
            CONTINUE WHEN old IS NULL;
            new := ('@extschema@.' || pg_catalog.quote_ident(t))::regclass;
            -- Adoption never drops a column: one audit_db does not know stops it here,
            -- and CREATE EXTENSION's transaction undoes everything done so far.
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(o.attname), ', ' ORDER BY o.attnum) INTO extra
              FROM pg_catalog.pg_attribute o
             WHERE o.attrelid = old AND o.attnum > 0 AND NOT o.attisdropped
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                WHERE a.attrelid = new AND a.attname = o.attname AND NOT a.attisdropped);
            IF extra IS NOT NULL THEN
                RAISE EXCEPTION 'adoption would drop columns of %: %', t, extra
                      USING ERRCODE = 'object_not_in_prerequisite_state',
                            DETAIL = 'audit_db''s table has no such columns; nothing was changed.',
                            HINT = 'Move the data of these columns elsewhere (or drop them) and run CREATE EXTENSION again.';
            END IF;
            -- Migration 0005 (run_id) not applied yet: each execution is its own run.
            IF t = 'report_executions' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute o
                                                        WHERE o.attrelid = old AND o.attname = 'run_id' AND NOT o.attisdropped) THEN
                EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN run_id varchar(255)', old);
                EXECUTE pg_catalog.format('UPDATE %s SET run_id = id', old);
            END IF;
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
              FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = new AND a.attnum > 0 AND NOT a.attisdropped
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute o
                            WHERE o.attrelid = old AND o.attname = a.attname AND o.attnum > 0 AND NOT o.attisdropped);
            -- A plain audit_log / error_log whose columns match is converted in place by
            -- audit_convert_to_partitioned (attach mode: no row copy) and its history
            -- becomes the partition <table>_legacy; anything else is copied.
            same_columns := false;
            IF t = 'audit_log' AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = old) = 'r' THEN
                -- The integrity columns (0.4.0) are new: empty on the adopted history; id
                -- becomes bigint (a rewrite of the adopted table, in place).
                EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS signature text,
                                           ADD COLUMN IF NOT EXISTS chain_seq bigint,
                                           ADD COLUMN IF NOT EXISTS chain_hash varchar(64),
                                           ADD COLUMN IF NOT EXISTS row_hash varchar(64),
                                           ADD COLUMN IF NOT EXISTS seal_epoch bigint,
                                           ADD COLUMN IF NOT EXISTS personal_keys text[],
                                           ALTER COLUMN id TYPE bigint', old);
            END IF;
            IF t IN ('audit_log', 'error_log')
               AND (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = old) = 'r' THEN
                SELECT NOT EXISTS (
                           (SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = new AND a.attnum > 0 AND NOT a.attisdropped
                            EXCEPT
                            SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = old AND a.attnum > 0 AND NOT a.attisdropped)
                           UNION ALL
                           (SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = old AND a.attnum > 0 AND NOT a.attisdropped
                            EXCEPT
                            SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = new AND a.attnum > 0 AND NOT a.attisdropped))
                  INTO same_columns;
            END IF;
            IF same_columns THEN
                cutoff := pg_catalog.date_trunc('month', pg_catalog.now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
                EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s', old) INTO expected;
                -- This month's events go to the new partitions (an event dated infinity
                -- to DEFAULT); the rest stays in place. audit_log's rows go through
                -- audit_adopt_rows: the insert trigger keeps their times and ids.
                IF t = 'audit_log' THEN
                    PERFORM @extschema@.audit_adopt_rows(old, new, cutoff);
                ELSE
                    EXECUTE pg_catalog.format('INSERT INTO %s (%s) SELECT %s FROM %s WHERE "timestamp" >= %L',
                                              new, cols, cols, old, cutoff);
                END IF;
                EXECUTE pg_catalog.format('DELETE FROM %s WHERE "timestamp" >= %L', old, cutoff);
                PERFORM @extschema@.audit_convert_to_partitioned(old, 'attach'::pg_catalog.text, 'timestamp'::pg_catalog.text);
                shell := pg_catalog.to_regclass('@extschema@.' || pg_catalog.quote_ident(t || '__drizzle'));
                legacy := pg_catalog.to_regclass('@extschema@.' || pg_catalog.quote_ident(t || '__drizzle_legacy'));
                EXECUTE pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s', shell, legacy);
                EXECUTE pg_catalog.format('ALTER TABLE %s RENAME TO %I', legacy, t || '_legacy');
                -- The partition takes the new parent's column defaults (the old ones
                -- name sequences that go with the old table).
                FOR seq IN
                    SELECT a.attname AS col, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS def
                      FROM pg_catalog.pg_attribute a
                      LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = new AND d.adnum = a.attnum
                     WHERE a.attrelid = new AND a.attnum > 0 AND NOT a.attisdropped
                LOOP
                    IF seq.def IS NULL THEN
                        EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', legacy, seq.col);
                    ELSE
                        EXECUTE pg_catalog.format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', legacy, seq.col, seq.def);
                    END IF;
                END LOOP;
                EXECUTE pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (MINVALUE) TO (%L)',
                                          new, legacy, cutoff);
                DELETE FROM @extschema@.audit_partition_config WHERE parent = shell;
                EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s', new) INTO copied;
                IF copied <> expected THEN
                    RAISE EXCEPTION 'adoption of % holds % rows of %', t, copied, expected
                          USING ERRCODE = 'data_exception', HINT = 'Nothing was changed; report this as a bug.';
                END IF;
                old := shell;
            ELSE
                IF t IN ('audit_log', 'error_log') THEN
                    -- Monthly partitions from the oldest event to now + 6 months.
                    EXECUTE pg_catalog.format('SELECT pg_catalog.min("timestamp") FROM %s WHERE "timestamp" > ''-infinity''', old)
                       INTO oldest;
                    IF oldest IS NOT NULL AND oldest > '-infinity' THEN
                        months := ((pg_catalog.date_part('year', pg_catalog.now() AT TIME ZONE 'UTC')
                                    - pg_catalog.date_part('year', oldest AT TIME ZONE 'UTC')) * 12
                                   + pg_catalog.date_part('month', pg_catalog.now() AT TIME ZONE 'UTC')
                                   - pg_catalog.date_part('month', oldest AT TIME ZONE 'UTC'))::int;
                        PERFORM @extschema@.audit_create_partitions(new, LEAST(GREATEST(months, 0) + 6, 1000), oldest);
                    END IF;
                END IF;
                IF t = 'audit_log' THEN
                    copied := @extschema@.audit_adopt_rows(old, new, NULL);
                ELSE
                    EXECUTE pg_catalog.format('INSERT INTO %s (%s) SELECT %s FROM %s', new, cols, cols, old);
                    GET DIAGNOSTICS copied = ROW_COUNT;
                END IF;
                EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s', old) INTO expected;
                IF copied <> expected THEN
                    RAISE EXCEPTION 'adoption of % copied % rows of %', t, copied, expected
                          USING ERRCODE = 'data_exception', HINT = 'Nothing was changed; report this as a bug.';
                END IF;
            END IF;
            -- Serial columns go on after the adopted ids.
            FOR seq IN
                SELECT pg_catalog.pg_get_serial_sequence(new::text, a.attname) AS name, a.attname AS col
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = new AND a.attnum > 0 AND NOT a.attisdropped
                   AND pg_catalog.pg_get_serial_sequence(new::text, a.attname) IS NOT NULL
            LOOP
                EXECUTE pg_catalog.format('SELECT pg_catalog.setval(%L, pg_catalog.max(%I), true) FROM %s HAVING pg_catalog.max(%I) IS NOT NULL',
                                          seq.name, seq.col, new, seq.col);
            END LOOP;
            adopted_tables := adopted_tables || old::text;
            RAISE WARNING 'audit_db: adopted % rows of %', copied, t;
            IF t IN ('audit_log', 'error_log') THEN
                EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s WHERE "timestamp" IN (''infinity'', ''-infinity'')', new)
                   INTO expected;
                IF expected > 0 THEN
                    RAISE WARNING 'audit_db: % adopted rows of % are dated infinity or -infinity', expected, t
                          USING HINT = 'They are kept as written (in the DEFAULT or legacy partition); no retention ever drops them.';
                END IF;
            END IF;
        END LOOP;
        IF pg_catalog.cardinality(adopted_tables) > 0 THEN
            EXECUTE 'DROP TABLE ' || pg_catalog.array_to_string(adopted_tables, ', ');
        END IF;
        -- The anchor (epoch 0) with the horizon of the adopted history: its rows have no
        -- audit_db evidence, and a row without evidence past the horizon was written with
        -- the trigger off (issue 25). An install that adopts nothing writes no anchor:
        -- every row without evidence is reported, and a pg_restore brings back the dumped one.
        PERFORM @extschema@.audit_seal_anchor();
        IF pg_catalog.to_regclass('drizzle.__drizzle_migrations') IS NOT NULL THEN
            INSERT INTO @extschema@.audit_schema_migrations (version, name, checksum, applied_at, applied_by, success)
            SELECT 'drizzle:' || pg_catalog.lpad((pg_catalog.row_number() OVER (ORDER BY m.created_at, m.id) - 1)::text, 4, '0'),
                   'Drizzle migration, imported from drizzle.__drizzle_migrations',
                   m.hash, pg_catalog.to_timestamp(m.created_at / 1000.0), session_user, true
              FROM drizzle.__drizzle_migrations m;
        END IF;
    END IF;
    script := (SELECT setting FROM pg_catalog.pg_config() WHERE name = 'SHAREDIR')
              || '/extension/audit_db--' || version || '.sql';
    INSERT INTO @extschema@.audit_schema_migrations (version, name, checksum, execution_ms)
    VALUES (version, CASE WHEN adopted THEN 'install (adopted a Drizzle-managed schema)' ELSE 'install' END,
            pg_catalog.encode(pg_catalog.sha256(pg_catalog.pg_read_binary_file(script, 0, 67108864, true)), 'hex'),
            (extract(epoch FROM pg_catalog.clock_timestamp()
                      - pg_catalog.current_setting('audit_db.script_started')::timestamptz) * 1000)::int);
END
$install$;

-- Partitions made above (and by adoption) are guarded against TRUNCATE too.
SELECT @extschema@.audit_log_guard_truncate();
