-- audit_db 0.2.0 -> 0.3.0: GDPR pseudonymization.
-- Hand-written, additive and data-preserving; once released (listed in sql/RELEASED)
-- never edited: later changes get a new step.
--   * pseudonym_mapping: strategy, key_id, blind_index (+ unique (strategy, blind_index)),
--     hash indexes on pseudonym_id and original_id (btree entries cap values at ~2.7 kB);
--     existing rows keep strategy NULL (they predate audit_db's encrypted mappings)
--   * audit_pseudonymize(), audit_depseudonymize(), audit_pseudonymize_subject(),
--     audit_export_subject(), audit_forget_subject(), audit_delete_subject(),
--     audit_apply_retention_policies(), audit_rotate_pseudonym_key()
-- Keys are read by the server from audit_db.key_file (shared_preload_libraries).
\echo Use "ALTER EXTENSION audit_db UPDATE" to load this file. \quit

SELECT pg_catalog.set_config('audit_db.script_started', pg_catalog.clock_timestamp()::text, true);

-- ------------------------------------------------------- pseudonym_mapping
-- Hash indexes under the original names: a btree entry is limited to about 2.7 kB,
-- and an encryption pseudonym or a sealed original of a 10 kB value is larger.
DROP INDEX pseudonym_mapping_pseudonym_id_idx;
DROP INDEX pseudonym_mapping_original_id_idx;
CREATE INDEX pseudonym_mapping_pseudonym_id_idx ON pseudonym_mapping USING hash (pseudonym_id);
CREATE INDEX pseudonym_mapping_original_id_idx ON pseudonym_mapping USING hash (original_id);
-- audit_db 0.3.0: the mapping names its strategy and key id and carries a keyed
-- blind index of the original (original_id itself is AES-256-GCM ciphertext), so
-- one original maps to one pseudonym per strategy without decrypting any row.
-- Rows with strategy NULL predate audit_db (adopted from the original service).
ALTER TABLE pseudonym_mapping
    ADD COLUMN strategy text CONSTRAINT pseudonym_mapping_strategy_check
        CHECK (strategy IN ('token', 'encryption')),
    ADD COLUMN key_id text,
    ADD COLUMN blind_index text;
CREATE UNIQUE INDEX pseudonym_mapping_strategy_blind_index_key
    ON pseudonym_mapping USING btree (strategy, blind_index);

-- ------------------------------------------------------------ functions
CREATE FUNCTION "audit_pseudonymize"(
	"original" TEXT,
	"strategy" TEXT DEFAULT 'hash'
) RETURNS TEXT
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_pseudonymize_wrapper';

CREATE FUNCTION "audit_depseudonymize"(
	"pseudonym" TEXT
) RETURNS TEXT
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_depseudonymize_wrapper';

CREATE FUNCTION "audit_pseudonymize_subject"(
	"principal_id" TEXT,
	"strategy" TEXT DEFAULT 'hash'
) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_pseudonymize_subject_wrapper';

CREATE FUNCTION "audit_export_subject"(
	"principal_id" TEXT
) RETURNS jsonb
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_export_subject_wrapper';

CREATE FUNCTION "audit_forget_subject"(
	"principal_id" TEXT
) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_forget_subject_wrapper';

CREATE FUNCTION "audit_delete_subject"(
	"principal_id" TEXT,
	"preserve_compliance" bool DEFAULT true
) RETURNS TABLE (
	"records_deleted" bigint, 
	"compliance_records_preserved" bigint 
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_delete_subject_wrapper';

CREATE FUNCTION "audit_apply_retention_policies"() RETURNS TABLE (
	"policy" TEXT, 
	"records_archived" bigint, 
	"records_deleted" bigint 
)
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_apply_retention_policies_wrapper';

CREATE FUNCTION "audit_rotate_pseudonym_key"(
	"old_key_id" TEXT
) RETURNS bigint
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO @extschema@, pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'audit_rotate_pseudonym_key_wrapper';

-- ----------------------------------------------------------- privileges
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

COMMENT ON FUNCTION audit_pseudonymize(text, text) IS
'Pseudonym of a value: hash (pseudo- + HMAC-SHA256 hex, one-way, no mapping), token (pseudo- + 32 hex random, one mapping per original found through a keyed blind index) or encryption (pseudo-enc-..., AES-256-GCM with a synthetic nonce, deterministic). Keys come from audit_db.key_file, never from SQL. Values starting with pseudo, system, security or integrity are returned unchanged; NULL gives NULL.';
COMMENT ON FUNCTION audit_depseudonymize(text) IS
'The original value of a token or encryption pseudonym (hash pseudonyms are one-way: 22023); unknown or forgotten pseudonyms: P0002; tampered data or a wrong key: 22000. Logs a gdpr.data.depseudonymize event (never the plaintext). For audit_db_gdpr only.';
COMMENT ON FUNCTION audit_pseudonymize_subject(text, text) IS
'Replaces a principal by its pseudonym in every audit_log row (partition by partition), with the personal details keys of audit_db.personal_details_keys, and marks the rows "pseudonymized": true; returns the rows changed and logs gdpr.data.pseudonymize.';
COMMENT ON FUNCTION audit_export_subject(text) IS
'GDPR access request: every audit_log row of a principal, also under its pseudonyms, as a jsonb array; logs gdpr.data.export.';
COMMENT ON FUNCTION audit_forget_subject(text) IS
'Crypto-shredding: deletes the principal''s pseudonym mappings, so no function can recover the identity while the trail stays; returns the mappings deleted; logs gdpr.data.delete.';
COMMENT ON FUNCTION audit_delete_subject(text, boolean) IS
'Right to erasure: deletes the principal''s audit_log rows, except (with preserve_compliance) the compliance actions, which are kept under the hash pseudonym; logs gdpr.data.delete.';
COMMENT ON FUNCTION audit_apply_retention_policies() IS
'Applies the active audit_retention_policy rows: archives (archived_at) rows of each data_classification older than archive_after_days (or retention_days) and deletes archived rows older than delete_after_days; logs gdpr.retention.apply.';
COMMENT ON FUNCTION audit_rotate_pseudonym_key(text) IS
'Re-encrypts every mapping row made under old_key_id with the current (last) key of audit_db.key_file and recomputes its blind index; returns the rows rotated.';

-- -------------------------------------------------------------- journal
INSERT INTO audit_schema_migrations (version, name, checksum, execution_ms)
VALUES ('0.3.0', 'GDPR pseudonymization',
        pg_catalog.encode(pg_catalog.sha256(pg_catalog.pg_read_binary_file(
            (SELECT setting FROM pg_catalog.pg_config() WHERE name = 'SHAREDIR') || '/extension/audit_db--0.2.0--0.3.0.sql',
            0, 67108864, true)), 'hex'),
        (extract(epoch FROM pg_catalog.clock_timestamp()
                  - pg_catalog.current_setting('audit_db.script_started')::timestamptz) * 1000)::int);
