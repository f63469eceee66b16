-- audit_db 0.3.0 -> 0.4.0: tamper-evident audit trail.
-- Hand-written, additive and data-preserving; once released (listed in sql/RELEASED)
-- never edited: later changes get a new step.
--   * audit_log: signature, chain_seq, chain_hash (+ index audit_log_chain_idx);
--     rows written before 0.4.0 keep them NULL and verify as "unchained"
--   * audit_chain_head, audit_chain_retired, audit_chain_lock(), audit_chain_store()
--   * triggers audit_log_integrity (hash, sign, chain), audit_log_append_only,
--     audit_log_no_truncate
--   * audit_verify_integrity(), audit_integrity_digest()
\echo Use "ALTER EXTENSION audit_db UPDATE" to load this file. \quit

SELECT pg_catalog.set_config('audit_db.script_started', pg_catalog.clock_timestamp()::text, true);

-- ------------------------------------------------------------- integrity
-- audit_db 0.4.0: every audit_log row is hashed, signed and chained by the trigger
-- audit_log_integrity (finalize.sql); see README "Tamper evidence".
ALTER TABLE audit_log
    ADD COLUMN signature text,
    ADD COLUMN chain_seq bigint,
    ADD COLUMN chain_hash varchar(64);
CREATE INDEX audit_log_chain_idx ON audit_log USING btree ((coalesce(organization_id, '')), chain_seq);

-- The head of each organization's chain; locked by an insert until it commits.
CREATE TABLE audit_chain_head (
    chain_key text PRIMARY KEY,
    seq bigint NOT NULL,
    hash varchar(64) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit_chain_head IS
'Head of each audit_log hash chain (one per organization_id, '''' for none): last sequence number and chain hash.';

-- Runs of chain links whose rows left audit_log legitimately (retention, erasure):
-- verification accepts exactly these gaps and continues from last_hash.
CREATE TABLE audit_chain_retired (
    chain_key text NOT NULL,
    from_seq bigint NOT NULL,
    to_seq bigint NOT NULL,
    last_hash varchar(64) NOT NULL,
    rows bigint NOT NULL,
    reason text NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (chain_key, from_seq)
);
COMMENT ON TABLE audit_chain_retired IS
'Chain runs whose audit_log rows were removed by retention or erasure, with the last chain hash of each run, so the chain still verifies across them.';

-- The integrity trigger keeps each chain's head in backend memory for the rest of the
-- transaction after locking it here once, and writes it back once before commit
-- (audit_chain_store): a bulk load into one organization then costs one head update,
-- not one per row.
CREATE FUNCTION audit_chain_lock(p_chain_key text, OUT seq bigint, OUT chain_hash text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = @extschema@, pg_catalog, pg_temp
AS $fn$
BEGIN
    SELECT h.seq, h.hash INTO seq, chain_hash FROM @extschema@.audit_chain_head h
     WHERE h.chain_key = p_chain_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO @extschema@.audit_chain_head (chain_key, seq, hash)
        VALUES (p_chain_key, 0, repeat('0', 64)) ON CONFLICT (chain_key) DO NOTHING;
        SELECT h.seq, h.hash INTO seq, chain_hash FROM @extschema@.audit_chain_head h
         WHERE h.chain_key = p_chain_key FOR UPDATE;
    END IF;
END
$fn$;

CREATE FUNCTION audit_chain_store(p_chain_key text, p_seq bigint, p_hash text) RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = @extschema@, pg_catalog, pg_temp
AS $fn$
    UPDATE @extschema@.audit_chain_head SET seq = p_seq, hash = p_hash, updated_at = now()
     WHERE chain_key = p_chain_key AND seq < p_seq
$fn$;


SELECT pg_catalog.pg_extension_config_dump('audit_chain_head', '');
SELECT pg_catalog.pg_extension_config_dump('audit_chain_retired', '');

-- ------------------------------------------------------------ functions
CREATE FUNCTION "audit_log_integrity_trigger"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'audit_log_integrity_trigger_wrapper';

CREATE FUNCTION "audit_log_append_only_trigger"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'audit_log_append_only_trigger_wrapper';

CREATE FUNCTION "audit_verify_integrity"(
	"from_ts" timestamp with time zone DEFAULT '-infinity',
	"to_ts" timestamp with time zone DEFAULT 'infinity'
) RETURNS TABLE (
	"checked" bigint, 
	"hash_mismatches" bigint, 
	"signature_mismatches" bigint, 
	"chain_breaks" bigint, 
	"first_bad_id" bigint 
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_verify_integrity_wrapper';

CREATE FUNCTION "audit_integrity_digest"(
	"upto" timestamp with time zone DEFAULT now()
) RETURNS jsonb
STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_integrity_digest_wrapper';

-- ----------------------------------------------------------- privileges
-- Integrity: writers append through the trigger (which calls audit_chain_lock/store);
-- verification and the digest are for admins and readers.
REVOKE ALL ON FUNCTION audit_chain_lock(text), audit_chain_store(text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_chain_lock(text), audit_chain_store(text, bigint, text)
   TO audit_db_writer, audit_db_admin, audit_db_gdpr;
REVOKE ALL ON FUNCTION audit_verify_integrity(timestamptz, timestamptz),
                       audit_integrity_digest(timestamptz), audit_log_integrity_trigger(),
                       audit_log_append_only_trigger() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_verify_integrity(timestamptz, timestamptz), audit_integrity_digest(timestamptz)
   TO audit_db_admin, audit_db_reader;
GRANT SELECT ON audit_chain_head, audit_chain_retired TO audit_db_reader, audit_db_admin;

-- ----------------------------------------------------------- integrity triggers
CREATE TRIGGER audit_log_integrity BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_integrity_trigger();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only_trigger();
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

COMMENT ON FUNCTION audit_chain_lock(text) IS
'Internal to the audit_log_integrity trigger: locks an organization''s chain head until commit and returns it.';
COMMENT ON FUNCTION audit_chain_store(text, bigint, text) IS
'Internal to the audit_log_integrity trigger: writes an organization''s chain head back before commit.';
COMMENT ON FUNCTION audit_log_integrity_trigger() IS
'BEFORE INSERT on audit_log: recomputes hash (audit_db.event.v1 canonical encoding, SHA-256), signs it (HMAC-SHA256 under the integrity key of audit_db.key_file; NULL without a key) and links it into its organization''s chain.';
COMMENT ON FUNCTION audit_log_append_only_trigger() IS
'BEFORE UPDATE OR DELETE on audit_log: refuses (42501) every change except those made by audit_db''s own retention and GDPR functions.';
COMMENT ON FUNCTION audit_log_no_truncate() IS
'BEFORE TRUNCATE on audit_log: refused (42501).';
COMMENT ON FUNCTION audit_verify_integrity(timestamptz, timestamptz) IS
'Recomputes hash, signature and chain of every audit_log row in the range; counts mismatches and chain breaks (edited, deleted, forged or reordered rows), returns the first bad id and records the run in audit_integrity_log.';
COMMENT ON FUNCTION audit_integrity_digest(timestamptz) IS
'Chain heads and row counts up to a time, as jsonb, to store outside the database and compare later: catches a rewrite of the whole chain.';

-- -------------------------------------------------------------- journal
INSERT INTO audit_schema_migrations (version, name, checksum, execution_ms)
VALUES ('0.4.0', 'tamper-evident audit trail',
        pg_catalog.encode(pg_catalog.sha256(pg_catalog.pg_read_binary_file(
            (SELECT setting FROM pg_catalog.pg_config() WHERE name = 'SHAREDIR') || '/extension/audit_db--0.3.0--0.4.0.sql',
            0, 67108864, true)), 'hex'),
        (extract(epoch FROM pg_catalog.clock_timestamp()
                  - pg_catalog.current_setting('audit_db.script_started')::timestamptz) * 1000)::int);
