-- audit_db 0.5.0 -> 0.6.0: tamper evidence that never makes writers wait (issue 13).
-- Hand-written, additive and data-preserving; once released (listed in sql/RELEASED)
-- never edited: later changes get a new step.
--   * audit_log gains row_hash, seal_epoch, personal_keys (nullable: no rewrite) and
--     the index audit_log_seal_epoch_idx (built on every partition: one scan each).
--   * the trigger audit_log_integrity now runs audit_log_seal_trigger(): no chain head
--     lock, the application's hash / hash_algorithm kept as written.
--   * audit_seal_block / audit_seal_retired; audit_seal(); the new
--     audit_verify_integrity() (three more result columns) and audit_integrity_digest().
--   * rows written by 0.4.0/0.5.0 keep their chains: an anchor block (epoch 0) records
--     every chain head, so the new chain of blocks continues them without a gap.
--   * audit_chain_lock() / audit_chain_store() and the old trigger function go.
--   * partitions of audit_log can no longer be dropped, detached or truncated one by
--     one outside audit_db (event triggers audit_log_guard_ddl / audit_log_guard_drop).
--   * the original's migration 0005 (run_id columns) and 64-bit audit_log ids: this
--     step rewrites audit_log (issue 14; see the section below).
--   * audit_pseudonymize_hash / audit_pseudonymize_batch (issue 17), the row check
--     verification runs in parallel (audit_seal_row_check), compatibility wrappers
--     for the original's partition functions.
--   * audit_partition_config.default_partition (issue 19): maintenance can run a
--     parent without a DEFAULT partition, so creation never waits for a reader.
--   * an archive cluster by logical replication (issue 16): audit_subject_command,
--     audit_archive_publish(), audit_archive_prepare().
\echo Use "ALTER EXTENSION audit_db UPDATE" to load this file. \quit

SELECT pg_catalog.set_config('audit_db.script_started', pg_catalog.clock_timestamp()::text, true);

-- ------------------------------------------------------------- tables
ALTER TABLE audit_partition_config ADD COLUMN default_partition boolean;
COMMENT ON TABLE audit_partition_config IS
'Partition upkeep per parent: interval (daily, weekly, monthly), premake periods ahead, retention (NULL = keep all), keep_table (detach and keep instead of drop), auto_create/auto_drop switches, lock_timeout for maintenance, the last maintenance run, and default_partition (false = maintenance moves the DEFAULT partition''s rows into partitions and drops it, so that creation never waits for a reader or pg_dump; true = creates one when missing; NULL = leaves it as it is).';
GRANT UPDATE (default_partition) ON audit_partition_config TO audit_db_admin;
ALTER TABLE audit_log
    ADD COLUMN row_hash varchar(64),
    ADD COLUMN seal_epoch bigint,
    ADD COLUMN personal_keys text[];
CREATE INDEX audit_log_seal_epoch_idx ON audit_log USING btree (seal_epoch, id);

CREATE TABLE audit_seal_block (
    epoch bigint PRIMARY KEY,
    rows bigint NOT NULL,
    sum text NOT NULL,
    prev_hash varchar(64) NOT NULL,
    block_hash varchar(64) NOT NULL,
    signature text,
    legacy_heads jsonb,
    sealed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    horizon_id bigint,
    horizon_rows bigint
);
COMMENT ON TABLE audit_seal_block IS
'One signed block per sealed epoch of audit_log: row count, MSet-Add-Hash sum of the rows'' signatures, hash chained to the previous block. The anchor (epoch 0, written by the 0.5.0 -> 0.6.0 step or an adopting install) ties the chain to the per-organization chains written before 0.6.0 (legacy_heads) and records the horizon: the highest id and the number of the rows that existed then without 0.6.0 evidence.';

CREATE TABLE audit_seal_retired (
    id bigserial PRIMARY KEY,
    epoch bigint NOT NULL,
    rows bigint NOT NULL,
    sum text NOT NULL,
    reason text NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX audit_seal_retired_epoch_idx ON audit_seal_retired USING btree (epoch);
COMMENT ON TABLE audit_seal_retired IS
'Rows that left audit_log through audit_db (retention, erasure, dropped or detached partitions), per epoch: count and sum, so present + retired = sealed still holds for each block.';

CREATE TABLE pseudonym_forgotten (
    pseudonym_id text NOT NULL,
    key_id text NOT NULL,
    reference text NOT NULL,
    signature text NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX pseudonym_forgotten_pseudonym_id_idx ON pseudonym_forgotten USING hash (pseudonym_id);
-- Published with the mappings (every change): without a key, an UPDATE or DELETE
-- would fail for want of a replica identity.
ALTER TABLE pseudonym_forgotten REPLICA IDENTITY FULL;
COMMENT ON TABLE pseudonym_forgotten IS
'What a forgotten token or encryption pseudonym stood for in the row hashes: per key, the reference (the hash pseudonym under that key) of its original, signed with that key, written by audit_forget_subject before the mapping goes. Verification checks the rows that still carry the pseudonym with it; a pseudonym neither mapped nor here with a valid signature is a hash mismatch (issue 25). The original itself is not kept.';

SELECT pg_catalog.pg_extension_config_dump('audit_seal_block', '');
SELECT pg_catalog.pg_extension_config_dump('audit_seal_retired', '');
SELECT pg_catalog.pg_extension_config_dump('audit_seal_retired_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pseudonym_forgotten', '');

-- The anchor (epoch 0): the heads of the 0.4.0/0.5.0 chains and the horizon (the
-- highest id and the number of the rows that exist now, none of which has 0.6.0
-- evidence), hashed as audit_db_core::seal::anchor_hash and signed when a key is
-- configured. The first block's prev_hash is its hash; a row without evidence past the
-- horizon was written with the trigger off, and verification reports it (issue 25).
-- audit_db::anchor::audit_seal_anchor
CREATE  FUNCTION "audit_seal_anchor"() RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_seal_anchor_wrapper';
REVOKE ALL ON FUNCTION audit_seal_anchor() FROM PUBLIC;
COMMENT ON FUNCTION audit_seal_anchor() IS
'Internal to the 0.5.0 -> 0.6.0 step and an adopting install: writes the anchor (audit_seal_block epoch 0) over the legacy chain heads and the horizon of rows without 0.6.0 evidence, signed when a key is configured; 42501 anywhere else.';
SELECT audit_seal_anchor();

-- ------------------------------------------- the original's columns (issue 14)
-- Migration 0005 of the original: run_id on scheduled_reports and report_executions.
-- Rows that predate it have no run id; report_executions requires one, and each
-- existing execution is taken as its own run (run_id := id).
ALTER TABLE scheduled_reports ADD COLUMN run_id varchar(255);
ALTER TABLE report_executions ADD COLUMN run_id varchar(255);
UPDATE report_executions SET run_id = id WHERE run_id IS NULL;
ALTER TABLE report_executions ALTER COLUMN run_id SET NOT NULL;
-- 64-bit event ids. Changing a column's type rewrites the table: every partition of
-- audit_log is rewritten and its indexes rebuilt under ACCESS EXCLUSIVE, about as long
-- as a copy of the table (docs/migrating.md: how to run it in a maintenance window).
-- The rows keep their values, so their hashes and signatures still verify.
ALTER SEQUENCE audit_log_id_seq AS bigint;
ALTER TABLE audit_log ALTER COLUMN id TYPE bigint;
ALTER TABLE audit_integrity_log ALTER COLUMN audit_log_id TYPE bigint;

-- ------------------------------------------------------------- functions
DROP TRIGGER audit_log_integrity ON audit_log;
DROP FUNCTION audit_log_integrity_trigger();
DROP FUNCTION audit_chain_lock(text);
DROP FUNCTION audit_chain_store(text, bigint, text);
DROP FUNCTION audit_verify_integrity(timestamptz, timestamptz);

-- audit_db::seal::audit_log_seal_trigger
CREATE FUNCTION "audit_log_seal_trigger"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'audit_log_seal_trigger_wrapper';

-- audit_db::sealer::audit_seal
CREATE  FUNCTION "audit_seal"(
	"wait_ms" INT DEFAULT 1000 /* Option < i32 > */
) RETURNS TABLE (
	"blocks" bigint,  /* i64 */
	"rows" bigint,  /* i64 */
	"sealed_upto" bigint,  /* i64 */
	"open_writers" bigint,  /* i64 */
	"status" TEXT  /* String */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_seal_wrapper';

-- audit_db::verify::audit_verify_integrity
CREATE  FUNCTION "audit_verify_integrity"(
	"from_ts" timestamp with time zone DEFAULT '-infinity', /* Option < TimestampWithTimeZone > */
	"to_ts" timestamp with time zone DEFAULT 'infinity' /* Option < TimestampWithTimeZone > */
) RETURNS TABLE (
	"checked" bigint,  /* i64 */
	"hash_mismatches" bigint,  /* i64 */
	"signature_mismatches" bigint,  /* i64 */
	"chain_breaks" bigint,  /* i64 */
	"first_bad_id" bigint,  /* Option < i64 > */
	"blocks" bigint,  /* i64 */
	"unsealed" bigint,  /* i64 */
	"legacy" bigint  /* i64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_verify_integrity_v2_wrapper';

-- audit_db::verify::audit_integrity_digest
CREATE OR REPLACE FUNCTION "audit_integrity_digest"(
	"upto" timestamp with time zone DEFAULT now() /* Option < TimestampWithTimeZone > */
) RETURNS jsonb /* pgrx :: JsonB */
STABLE PARALLEL SAFE 
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_integrity_digest_v2_wrapper';

CREATE TRIGGER audit_log_integrity BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_seal_trigger();

REVOKE ALL ON FUNCTION audit_verify_integrity(timestamptz, timestamptz),
                       audit_integrity_digest(timestamptz), audit_log_seal_trigger(), audit_seal(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_verify_integrity(timestamptz, timestamptz), audit_integrity_digest(timestamptz)
   TO audit_db_admin, audit_db_reader;
GRANT EXECUTE ON FUNCTION audit_seal(integer) TO audit_db_admin;
GRANT SELECT ON audit_seal_block, audit_seal_retired TO audit_db_reader, audit_db_admin;

COMMENT ON FUNCTION audit_log_seal_trigger() IS
'BEFORE INSERT on audit_log: computes row_hash (audit_db.event.v2 canonical encoding, SHA-256; the application''s hash and hash_algorithm are kept as written and covered), signs it (HMAC-SHA256 under the integrity key of audit_db.key_file; NULL without a key) and tags the row with the open seal epoch. Takes no lock and touches no table.';
COMMENT ON FUNCTION audit_verify_integrity(timestamptz, timestamptz) IS
'Recomputes row hash and signature of every audit_log row in the range with the insert trigger''s code; over the whole range also checks every sealed block (chain, signature, row count and sum, retired rows) and the chains of rows written before 0.6.0. chain_breaks counts broken or mismatched blocks and chain links (deleted, added or moved rows); returns the first bad id, unsealed and legacy counts, and records the run in audit_integrity_log (not on a standby).';
COMMENT ON FUNCTION audit_integrity_digest(timestamptz) IS
'The newest sealed block up to a time (epoch, block hash, rows), block and retired counts, as jsonb, to store outside the database and compare later: catches a rewrite of the whole chain.';
COMMENT ON FUNCTION audit_seal(integer) IS
'Seals audit_log: closes the open epoch, waits up to wait_ms for transactions still writing into closed epochs, and writes one signed block per epoch. A no-op on a standby and on an archive (its blocks come from the primary); one sealer per database at a time. The background worker (audit_db.sealer_database, audit_db.seal_interval) and audit_partition_maintenance() call it too.';

-- audit_db::integrity::audit_internal_write
CREATE  FUNCTION "audit_internal_write"() RETURNS bool /* bool */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_internal_write_wrapper';

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

-- ------------------------------------------------------- partition guard
-- audit_db 0.6.0: rows leave audit_log only through audit_db (which records them for
-- the integrity trail first). DROP TABLE of a partition drops its clone of the
-- audit_log_integrity trigger: sql_drop refuses it. DETACH leaves the table with its
-- own TRUNCATE guard but no parent: ddl_command_end refuses it. TRUNCATE of a single
-- partition (statement triggers are not cloned) meets audit_log_no_truncate, which
-- ddl_command_end adds to every partition. Only DROP EXTENSION is let through.
-- audit_db::integrity::audit_log_guard_truncate
CREATE  FUNCTION "audit_log_guard_truncate"() RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_log_guard_truncate_wrapper';

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

COMMENT ON FUNCTION audit_internal_write() IS
'True while audit_db itself removes audit_log rows or partitions (retention, erasure); read by the partition guard event triggers. Backend memory only: no statement or setting turns it on.';
COMMENT ON FUNCTION audit_log_guard_truncate() IS
'Adds the internal statement trigger audit_log_no_truncate to every partition of audit_log lacking it (statement triggers are not cloned to partitions; internal, so pg_dump leaves it out); returns how many it added.';
COMMENT ON FUNCTION audit_log_guard_ddl() IS
'Event trigger (ddl_command_end, CREATE/ALTER TABLE): refuses (42501) a DETACH of an audit_log partition not made by audit_db, and guards new partitions against TRUNCATE.';
COMMENT ON FUNCTION audit_log_guard_drop() IS
'Event trigger (sql_drop): refuses (42501) DROP of an audit_log partition not made by audit_db; DROP EXTENSION passes.';

-- Two COMMENTs that no longer described what the functions do.
COMMENT ON FUNCTION audit_partition_maintenance(timestamptz) IS
'Creates then drops partitions for every row of audit_partition_config; the call to schedule with pg_cron. One run at a time (advisory lock; a second returns at once), nothing on a hot standby. Locks are taken in short attempts (audit_db.lock_attempt_timeout, 50 ms) retried with backoff within the row''s lock_timeout, each attempt in a subtransaction that releases what it locked when it gives up: writers of a parent wait at most one attempt, also behind a long reader or pg_dump. A partition not locked in time is reported as skipped (overdue, with a WARNING, once it is more than a day past its retention) and done by a later run. Creation builds each new table with its indexes before any lock. Into a parent with a DEFAULT partition it then holds that parent''s writers off (SHARE ROW EXCLUSIVE on the parent alone, ACCESS EXCLUSIVE on the DEFAULT partition) from the attach to the end of the run, so it comes after sealing and every later lock gets one attempt; a parent without DEFAULT partition (default_partition = false: its rows are moved into partitions, then it is dropped, action default_dropped) takes only SHARE UPDATE EXCLUSIVE, which no writer, reader or pg_dump blocks. The drops, which need ACCESS EXCLUSIVE on the parents, run last in a single DROP TABLE statement.';
COMMENT ON FUNCTION audit_pseudonymize_subject(text, text) IS
'Replaces a principal by its pseudonym in every audit_log row (one statement over all partitions), with the personal details keys of audit_db.personal_details_keys, and marks the rows "pseudonymized": true; returns the rows changed and logs gdpr.data.pseudonymize.';

-- ------------------------------------------------- pseudonymization speed
-- Issue 17: the hash strategy without per-call overhead, and a batch form.
-- The hash strategy at hash-function speed (issue 17; src/privacy/hash_pseudonym.rs): no
-- table, so no SECURITY DEFINER or SET clause; STABLE (the key can change on reload)
-- and PARALLEL SAFE.
CREATE FUNCTION audit_pseudonymize_hash(original text) RETURNS text
    STRICT STABLE PARALLEL SAFE
    LANGUAGE c AS 'MODULE_PATHNAME', 'audit_pseudonymize_hash_v1';

-- audit_db::gdpr::audit_pseudonymize_batch
CREATE  FUNCTION "audit_pseudonymize_batch"(
	"originals" TEXT[], /* core::option::Option<alloc::vec::Vec<core::option::Option<alloc::string::String>>> */
	"strategy" TEXT DEFAULT 'hash' /* core::option::Option<&str> */
) RETURNS TEXT[] /* core::option::Option<alloc::vec::Vec<core::option::Option<alloc::string::String>>> */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_pseudonymize_batch_wrapper';

REVOKE ALL ON FUNCTION audit_pseudonymize_hash(text), audit_pseudonymize_batch(text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_pseudonymize_hash(text), audit_pseudonymize_batch(text[], text)
   TO audit_db_admin, audit_db_gdpr;
COMMENT ON FUNCTION audit_pseudonymize_hash(text) IS
'The hash pseudonym of a value, as audit_pseudonymize(x, ''hash''): pseudo- + 64 hex of HMAC-SHA256 under the current key; values starting with pseudo, system, security or integrity unchanged; NULL gives NULL. STABLE and PARALLEL SAFE, no SECURITY DEFINER: use it over large tables.';
COMMENT ON FUNCTION audit_pseudonymize_batch(text[], text) IS
'audit_pseudonymize of every element of an array, in order (NULL elements stay NULL): token and encryption mappings of the whole array are looked up with one statement and the new ones written with one more.';

-- audit_db::unique_id::audit_log_next_id
CREATE  FUNCTION "audit_log_next_id"() RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_log_next_id_wrapper';
-- Rows the original application wrote: checked against its own hash (src/journal/original.rs).
-- audit_db::original::audit_original_hash_matches
CREATE  FUNCTION "audit_original_hash_matches"(
	"stored" TEXT, /* Option < & str > */
	"algorithm" TEXT, /* Option < & str > */
	"ts" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"action" TEXT, /* Option < & str > */
	"status" TEXT, /* Option < & str > */
	"principal_id" TEXT, /* Option < & str > */
	"organization_id" TEXT, /* Option < & str > */
	"target_resource_type" TEXT, /* Option < & str > */
	"target_resource_id" TEXT, /* Option < & str > */
	"outcome_description" TEXT /* Option < & str > */
) RETURNS bool /* Option < bool > */
VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_original_hash_matches_wrapper';
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
-- audit_db::adopt::audit_adopt_rows
CREATE  FUNCTION "audit_adopt_rows"(
	"source" regclass, /* Regclass */
	"target" regclass, /* Regclass */
	"since" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_adopt_rows_wrapper';
REVOKE ALL ON FUNCTION audit_log_next_id() FROM PUBLIC;
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

-- audit_db::maintenance::audit_partition_maintenance_phase
CREATE  FUNCTION "audit_partition_maintenance_phase"(
	"phase" TEXT, /* Option < & str > */
	"reference_time" timestamp with time zone DEFAULT now() /* Option < TimestampWithTimeZone > */
) RETURNS TABLE (
	"parent" regclass,  /* Option < Regclass > */
	"action" TEXT,  /* String */
	"partition" TEXT,  /* Option < String > */
	"detail" TEXT  /* Option < String > */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_partition_maintenance_phase_wrapper';
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

-- ------------------------------------------ archive cluster (issue 16)
-- audit_db::archive::audit_subject_command_replay
CREATE FUNCTION "audit_subject_command_replay"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'audit_subject_command_replay_wrapper';

-- audit_db::archive::audit_archive_publish
CREATE  FUNCTION "audit_archive_publish"(
	"publication" TEXT DEFAULT 'audit_db_archive' /* Option < & str > */
) RETURNS SETOF TEXT /* String */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_archive_publish_wrapper';

-- audit_db::archive::audit_archive_prepare
CREATE  FUNCTION "audit_archive_prepare"() RETURNS TEXT /* String */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_archive_prepare_wrapper';

CREATE TABLE audit_subject_command (
    id bigserial PRIMARY KEY,
    operation text NOT NULL
        CONSTRAINT audit_subject_command_operation_check
        CHECK (operation IN ('pseudonymize', 'delete', 'forget')),
    payload text NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit_subject_command IS
'Always empty. Each subject function (pseudonymize, delete, forget) inserts its operation here, the subject encrypted under the root key, and deletes it in the same transaction: logical replication carries the insert to an archive, whose replica trigger runs the same operation over the archive''s rows (docs/scale-out.md).';
CREATE TRIGGER audit_subject_command_replay BEFORE INSERT ON audit_subject_command
    FOR EACH ROW EXECUTE FUNCTION audit_subject_command_replay();
ALTER TABLE audit_subject_command ENABLE REPLICA TRIGGER audit_subject_command_replay;
-- The apply worker runs with an empty search_path; the operations name their tables.
ALTER FUNCTION audit_subject_command_replay() SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION audit_subject_command_replay(), audit_archive_publish(text), audit_archive_prepare() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_archive_publish(text), audit_archive_prepare() TO audit_db_admin;
COMMENT ON FUNCTION audit_subject_command_replay() IS
'BEFORE INSERT on audit_subject_command, enabled for replication only: on an archive, runs the primary''s subject operation (pseudonymize, delete, forget) over the archive''s rows, then drops the command row.';
COMMENT ON FUNCTION audit_archive_publish(text) IS
'On the primary: creates (or brings back in line) the publications an archive subscribes to: <publication> (audit_log, audit_seal_block and audit_subject_command, inserts only, via the partition root) and <publication>_mappings (pseudonym_mapping and pseudonym_forgotten, every change). Returns their names.';
COMMENT ON FUNCTION audit_archive_prepare() IS
'On a new archive database: checks that it holds no events or blocks of its own and that the root key file is loaded, keeps a DEFAULT partition on audit_log for periods without a partition, and returns the CREATE SUBSCRIPTION to run next.';

-- ------------------------------------------ a subject's whole footprint (issue 18)
-- audit_db::subject::audit_pseudonymize_subject_ids
CREATE  FUNCTION "audit_pseudonymize_subject"(
	"identifiers" TEXT[], /* Option < Vec < Option < String > > > */
	"strategy" TEXT DEFAULT 'hash' /* Option < & str > */
) RETURNS TABLE (
	"table_name" TEXT,  /* String */
	"column_name" TEXT,  /* String */
	"action" TEXT,  /* String */
	"rows" bigint  /* i64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_pseudonymize_subject_ids_wrapper';

-- audit_db::subject::audit_delete_subject_ids
CREATE  FUNCTION "audit_delete_subject"(
	"identifiers" TEXT[], /* Option < Vec < Option < String > > > */
	"preserve_compliance" bool DEFAULT true /* Option < bool > */
) RETURNS TABLE (
	"table_name" TEXT,  /* String */
	"column_name" TEXT,  /* String */
	"action" TEXT,  /* String */
	"rows" bigint  /* i64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_delete_subject_ids_wrapper';

-- audit_db::subject::audit_forget_subject_ids
CREATE  FUNCTION "audit_forget_subject"(
	"identifiers" TEXT[] /* Option < Vec < Option < String > > > */
) RETURNS TABLE (
	"table_name" TEXT,  /* String */
	"column_name" TEXT,  /* String */
	"action" TEXT,  /* String */
	"rows" bigint  /* i64 */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_forget_subject_ids_wrapper';

-- audit_db::subject::audit_export_subject_ids
CREATE  FUNCTION "audit_export_subject"(
	"identifiers" TEXT[] /* Option < Vec < Option < String > > > */
) RETURNS jsonb /* pgrx :: JsonB */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_export_subject_ids_wrapper';

-- audit_db::privacy::json_values::audit_json_mentions (issue 26)
CREATE  FUNCTION "audit_json_mentions"(
	"doc" TEXT, /* &str */
	"names" TEXT[] /* Vec < Option < String > > */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_json_mentions_wrapper';
-- audit_db::privacy::json_values::audit_json_replace (issue 26)
CREATE  FUNCTION "audit_json_replace"(
	"doc" TEXT, /* Option < & str > */
	"top_keys" TEXT[], /* Option < Vec < Option < String > > > */
	"originals" TEXT[], /* Option < Vec < Option < String > > > */
	"pseudonyms" TEXT[] /* Option < Vec < Option < String > > > */
) RETURNS TEXT /* Option < String > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_json_replace_wrapper';
-- audit_db::subject::audit_subject_names
CREATE  FUNCTION "audit_subject_names"(
	"identifiers" TEXT[] /* Option < Vec < Option < String > > > */
) RETURNS TEXT[] /* Vec < String > */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_subject_names_wrapper';
-- audit_db::subject::audit_subject_place_rows
CREATE  FUNCTION "audit_subject_place_rows"(
	"relation" regclass, /* Option < crate :: regclass :: Regclass > */
	"column_name" TEXT, /* Option < & str > */
	"kind" TEXT, /* Option < & str > */
	"names" TEXT[] /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS SETOF jsonb /* JsonbDatum */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_subject_place_rows_wrapper';

-- ----------------------------------------------------------- audit_subject_map
-- Where a data subject appears (issue 18): one row per column that holds a person
-- identifier. The subject functions export, pseudonymize and erase at every place;
-- builtin rows cover the original's tables, a DPO adds their own (audit_db_gdpr).
CREATE TABLE audit_subject_map (
    relation regclass NOT NULL,
    column_name name NOT NULL,
    role text NOT NULL
        CONSTRAINT audit_subject_map_role_check CHECK (role IN ('actor', 'target', 'mentioned')),
    kind text NOT NULL DEFAULT 'column'
        CONSTRAINT audit_subject_map_kind_check CHECK (kind IN ('column', 'json_array', 'details_keys')),
    on_erasure text NOT NULL DEFAULT 'pseudonymize'
        CONSTRAINT audit_subject_map_on_erasure_check CHECK (on_erasure IN ('pseudonymize', 'delete_row')),
    builtin boolean NOT NULL DEFAULT false,
    note text,
    PRIMARY KEY (relation, column_name)
);
COMMENT ON TABLE audit_subject_map IS
'Where a data subject appears: per table and column, the role the person has there (actor, target, mentioned), how the value is stored (column, json_array of identifiers, details_keys = the personal keys of audit_log.details), and what erasure does (pseudonymize by hash, or delete_row). Builtin rows cover the original''s tables and cannot be changed; a DPO (audit_db_gdpr) adds rows for their own tables. Read by audit_export_subject, audit_pseudonymize_subject, audit_delete_subject and audit_subject_rows.';
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
SELECT pg_catalog.pg_extension_config_dump('audit_subject_map', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('audit_subject_command', '');
SELECT pg_catalog.pg_extension_config_dump('audit_subject_command_id_seq', '');
COMMENT ON FUNCTION audit_pseudonymize_subject(text, text) IS
'audit_pseudonymize_subject(ARRAY[principal_id], strategy): the subject at every place of audit_subject_map (as actor, target and mentioned in audit_log, and in the other tables); returns the audit_log rows changed.';
COMMENT ON FUNCTION audit_export_subject(text) IS
'audit_export_subject(ARRAY[principal_id]): every row where the subject appears, as a jsonb array of {table, column, role, row}; logs gdpr.data.export.';
COMMENT ON FUNCTION audit_forget_subject(text) IS
'Crypto-shredding: deletes the principal''s pseudonym mappings, so no function can recover the identity while the trail stays; returns the mappings deleted; logs gdpr.data.delete.';
COMMENT ON FUNCTION audit_delete_subject(text, boolean) IS
'audit_delete_subject(ARRAY[principal_id], preserve_compliance): deletes the principal''s own audit_log events (with preserve_compliance the compliance actions stay, pseudonymized by hash) and pseudonymizes or deletes every other place of audit_subject_map; returns the audit_log rows deleted and the compliance rows kept.';

-- ------------------------------------------------ search_path (issue 25)
-- Every function of audit_db resolves names in pg_catalog only and names its own
-- objects with their schema: an operator or function planted in the extension's
-- schema (public, by default) is never chosen for a statement that runs as the
-- superuser. The functions of earlier releases that this step does not create anew:
ALTER FUNCTION audit_analyze_partitions(regclass, bigint, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_apply_retention_policies() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_create_partitions(regclass, integer, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_delete_subject(text, boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_depseudonymize(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_drop_expired_partitions(regclass, interval, boolean, timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_export_subject(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_finish_restore() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_forget_subject(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_partition_maintenance(timestamptz) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_pseudonymize(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_pseudonymize_subject(text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_restore_indexes_trigger() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_rotate_pseudonym_key(text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_schema_snapshot() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit_verify_schema() SET search_path = pg_catalog, pg_temp;

-- -------------------------------------------------------------- journal
INSERT INTO audit_schema_migrations (version, name, checksum, execution_ms)
VALUES ('0.6.0', 'integrity: per-row signatures, sealed epochs, no writer waits',
        pg_catalog.encode(pg_catalog.sha256(pg_catalog.pg_read_binary_file(
            (SELECT setting FROM pg_catalog.pg_config() WHERE name = 'SHAREDIR') || '/extension/audit_db--0.5.0--0.6.0.sql',
            0, 67108864, true)), 'hex'),
        (extract(epoch FROM pg_catalog.clock_timestamp()
                  - pg_catalog.current_setting('audit_db.script_started')::timestamptz) * 1000)::int);

