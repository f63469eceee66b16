-- Upgrade path: every released version installed, filled, updated to the newest;
-- then its catalog equals a fresh install's, every row is there, verification is
-- clean and the journal lists each step once, in order.
SET timezone = 'UTC';
CREATE EXTENSION dblink;
CREATE DATABASE audit_upgrade_fresh;
CREATE DATABASE audit_upgrade_010;
SELECT format('host=%s port=%s user=postgres dbname=',
              current_setting('unix_socket_directories'), current_setting('port')) AS conn \gset
-- ------------------------------------------------------------ fresh install
\c audit_upgrade_fresh
SET client_min_messages = warning;
SELECT clock_timestamp() AS before_install \gset
CREATE EXTENSION audit_db;
SELECT clock_timestamp() AS after_install \gset
RESET client_min_messages;
SELECT audit_schema_version(), (SELECT extversion FROM pg_extension WHERE extname = 'audit_db') AS extversion;
SELECT version, name, checksum ~ '^[0-9a-f]{64}$' AS sha256, applied_by,
       applied_at BETWEEN :'before_install' AND :'after_install' AS applied_during_install,
       execution_ms BETWEEN 0 AND extract(epoch FROM :'after_install'::timestamptz - :'before_install') * 1000
         AS timed_within_install, success
  FROM audit_migrations();
SELECT * FROM audit_pending_migrations();
-- ------------------------------------------------- 0.1.0, filled, then updated
\c audit_upgrade_010
SET timezone = 'UTC';
CREATE EXTENSION dblink;
CREATE EXTENSION audit_db VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'audit_db';
SELECT to_regclass('audit_partition_config') AS config_table, to_regclass('audit_schema_migrations') AS journal;
-- audit_create_partitions of this library serves the 0.1.0 schema (no config table).
SELECT * FROM audit_create_partitions('audit_log', 1, '2024-02-10');
INSERT INTO audit_log ("timestamp", action, status)
SELECT '2024-02-01'::timestamptz + i * interval '1 hour', 'upgrade.test', 'ok' FROM generate_series(0, 999) i;
INSERT INTO audit_log ("timestamp", action, status) VALUES ('1999-01-01', 'old', 'ok');
INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id,
                       retryable, aggregation_key, "timestamp")
VALUES ('e1', 'db', 'high', 'E1', 'boom', 'api', 'read', 'c1', 'false', 'k1', now());
INSERT INTO alerts (id, organization_id, severity, type, title, description, source, correlation_id,
                    created_at, updated_at)
VALUES ('a1', 'org', 'HIGH', 'SECURITY', 't', 'd', 's', 'c1', now(), now());
INSERT INTO pseudonym_mapping (timestamp, pseudonym_id, original_id) VALUES (now(), 'p1', 'o1');
CREATE TEMP TABLE before AS
SELECT 'audit_log' AS t, count(*) AS n, sum(id) AS ids FROM audit_log
UNION ALL SELECT 'audit_log_default', count(*), sum(id) FROM audit_log_default
UNION ALL SELECT 'error_log', count(*), NULL FROM error_log
UNION ALL SELECT 'alerts', count(*), NULL FROM alerts
UNION ALL SELECT 'pseudonym_mapping', count(*), sum(id) FROM pseudonym_mapping;
SELECT * FROM pg_extension_update_paths('audit_db') WHERE source = '0.1.0' ORDER BY target;
ALTER EXTENSION audit_db UPDATE;
SELECT audit_schema_version();
SELECT * FROM audit_pending_migrations();
-- (b) every row is still there.
SELECT b.t, b.n, a.n AS after_n, b.ids IS NOT DISTINCT FROM a.ids AS same_ids
  FROM before b
  JOIN (SELECT 'audit_log' AS t, count(*) AS n, sum(id) AS ids FROM audit_log
        UNION ALL SELECT 'audit_log_default', count(*), sum(id) FROM audit_log_default
        UNION ALL SELECT 'error_log', count(*), NULL FROM error_log
        UNION ALL SELECT 'alerts', count(*), NULL FROM alerts
        UNION ALL SELECT 'pseudonym_mapping', count(*), sum(id) FROM pseudonym_mapping) a USING (t)
 ORDER BY 1;
-- (c) the schema is exactly as shipped.
SELECT * FROM audit_verify_schema();
-- (d) the journal: each step once, in order.
SELECT version, name, checksum ~ '^[0-9a-f]{64}$' AS sha256, success FROM audit_migrations();
SELECT parent, "interval", premake FROM audit_partition_config ORDER BY parent::text;
-- The functions of 0.2.0 work on the upgraded schema.
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 month', false, '2024-04-15');
SELECT count(*) FROM audit_log WHERE action = 'upgrade.test';
-- (a) the catalog of the extension's objects equals the fresh install's: member objects
-- (pg_describe_object over pg_depend deptype 'e') and audit_schema_snapshot() (columns,
-- types, defaults, indexes, constraints, privileges, function definitions).
CREATE TEMP VIEW catalog AS
SELECT 'member' AS kind, pg_describe_object(d.classid, d.objid, d.objsubid) AS object, '' AS definition
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db'
 WHERE d.deptype = 'e'
UNION ALL
SELECT object_type, object_name, definition FROM audit_schema_snapshot();
SELECT count(*) > 400 AS plenty FROM catalog;
CREATE TEMP TABLE fresh_catalog AS
SELECT * FROM dblink(:'conn' || 'audit_upgrade_fresh', $$
    SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db'
     WHERE d.deptype = 'e'
    UNION ALL
    SELECT object_type, object_name, definition FROM audit_schema_snapshot()$$)
    AS f(kind text, object text, definition text);
SELECT count(*) = (SELECT count(*) FROM catalog) AS same_size FROM fresh_catalog;
SELECT 'only after upgrade' AS side, * FROM (SELECT * FROM catalog EXCEPT SELECT * FROM fresh_catalog) x
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM fresh_catalog EXCEPT SELECT * FROM catalog) y;
-- The journal's checksums are those of the installed scripts.
SELECT version, checksum = encode(sha256(pg_read_binary_file(
           (SELECT setting FROM pg_config() WHERE name = 'SHAREDIR') || '/extension/' ||
           CASE version WHEN '0.1.0' THEN 'audit_db--0.1.0.sql' WHEN '0.2.0' THEN 'audit_db--0.1.0--0.2.0.sql'
                        WHEN '0.3.0' THEN 'audit_db--0.2.0--0.3.0.sql'
                        WHEN '0.4.0' THEN 'audit_db--0.3.0--0.4.0.sql'
                        WHEN '0.5.0' THEN 'audit_db--0.4.0--0.5.0.sql'
                        WHEN '0.6.0' THEN 'audit_db--0.5.0--0.6.0.sql' END)), 'hex')
       AS checksum_matches
  FROM audit_migrations();
-- ------------------------------------------------- 0.2.0, filled, then updated
CREATE DATABASE audit_upgrade_020;
\c audit_upgrade_020
SET client_min_messages = warning;
CREATE EXTENSION audit_db VERSION '0.2.0';
CREATE EXTENSION dblink;
RESET client_min_messages;
INSERT INTO audit_log ("timestamp", action, status) SELECT now(), 'u020', 'ok' FROM generate_series(1, 10);
-- A mapping row as the original service wrote it (plaintext original, no strategy).
INSERT INTO pseudonym_mapping ("timestamp", pseudonym_id, original_id) VALUES (now(), 'pseudo-legacy', 'legacy-user');
SELECT * FROM audit_pending_migrations();
ALTER EXTENSION audit_db UPDATE;
SELECT audit_schema_version(), (SELECT count(*) FROM audit_log WHERE action = 'u020') AS rows_kept,
       (SELECT strategy IS NULL AND original_id = 'legacy-user' FROM pseudonym_mapping) AS legacy_mapping_kept;
SELECT * FROM audit_verify_schema();
SELECT version, name FROM audit_migrations();
CREATE TEMP TABLE cat AS
SELECT 'member' AS kind, pg_describe_object(d.classid, d.objid, d.objsubid) AS object, '' AS definition
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db' WHERE d.deptype = 'e'
UNION ALL SELECT object_type, object_name, definition FROM audit_schema_snapshot();
CREATE TEMP TABLE fresh AS
SELECT * FROM dblink(:'conn' || 'audit_upgrade_fresh', $$
    SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db' WHERE d.deptype = 'e'
    UNION ALL SELECT object_type, object_name, definition FROM audit_schema_snapshot()$$)
    AS f(kind text, object text, definition text);
SELECT (SELECT count(*) FROM (SELECT * FROM cat EXCEPT SELECT * FROM fresh) a) AS only_after_upgrade,
       (SELECT count(*) FROM (SELECT * FROM fresh EXCEPT SELECT * FROM cat) b) AS only_in_fresh_install,
       (SELECT count(*) FROM cat) = (SELECT count(*) FROM fresh) AS same_size;
-- ------------------------------------- 0.4.0 -> 0.5.0: chain heads owner-only
CREATE DATABASE audit_upgrade_040;
\c audit_upgrade_040
SET client_min_messages = warning;
CREATE EXTENSION audit_db VERSION '0.4.0';
RESET client_min_messages;
CREATE ROLE regress_up_writer IN ROLE audit_db_writer;
SELECT has_function_privilege('regress_up_writer', 'audit_chain_store(text,bigint,text)', 'EXECUTE') AS writer_may_move_heads;
INSERT INTO audit_partition_config (parent) VALUES ('audit_integrity_log');
DELETE FROM audit_partition_config WHERE parent = 'audit_integrity_log'::regclass;
ALTER EXTENSION audit_db UPDATE TO '0.5.0';
SELECT has_function_privilege('regress_up_writer', 'audit_chain_store(text,bigint,text)', 'EXECUTE') AS writer_may_move_heads;
SET ROLE regress_up_writer;
INSERT INTO audit_log ("timestamp", organization_id, action, status)
SELECT now(), 'org-up', 'u040', 'ok' FROM generate_series(1, 3);
SELECT audit_chain_store('org-up', 100, repeat('0', 64));
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT chain_key, seq FROM audit_chain_head WHERE chain_key = 'org-up';
SELECT checked, hash_mismatches, chain_breaks FROM audit_verify_integrity();
INSERT INTO audit_partition_config (parent) VALUES ('audit_integrity_log');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit_verify_schema();
SELECT version, name FROM audit_migrations() WHERE version = '0.5.0';
-- ------------------- 0.5.0 -> 0.6.0: sealed epochs; the old chains keep verifying
INSERT INTO audit_log ("timestamp", organization_id, principal_id, action, status, details)
SELECT now(), 'org-' || (i % 2), 'user-' || i, 'u050', 'ok', '{"email": "e@x"}' FROM generate_series(1, 4) i;
SELECT count(*) AS legacy_rows, count(chain_seq) AS chained FROM audit_log;
ALTER EXTENSION audit_db UPDATE TO '0.6.0';
SELECT epoch, rows, jsonb_array_length(legacy_heads) AS chains_anchored, signature IS NULL AS anchor_unsigned
  FROM audit_seal_block;
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks, blocks, unsealed, legacy FROM audit_verify_integrity();
-- New rows join the new scheme: no chain, an epoch, a signature; sealing continues
-- the anchored chain without a gap.
SET ROLE regress_up_writer;
INSERT INTO audit_log ("timestamp", organization_id, action, status, hash)
SELECT now(), 'org-up', 'u060', 'ok', 'app-' || i FROM generate_series(1, 3) i;
RESET ROLE;
SELECT count(*) AS new_rows, count(chain_seq) AS chained, count(*) FILTER (WHERE hash LIKE 'app-%') AS app_hash_kept
  FROM audit_log WHERE action = 'u060';
SELECT blocks, rows, status FROM audit_seal(0);
SELECT b.prev_hash = a.block_hash AS continues_anchor
  FROM audit_seal_block b JOIN audit_seal_block a ON a.epoch = 0 WHERE b.epoch > 0;
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks, blocks, unsealed, legacy FROM audit_verify_integrity();
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET status = 'tampered' WHERE action = 'u050' AND organization_id = 'org-1' AND chain_seq = 1;
SELECT 'legacy row edited' AS tampering, hash_mismatches, chain_breaks FROM audit_verify_integrity();
ROLLBACK;
SELECT * FROM audit_verify_schema();
SELECT version, name FROM audit_migrations() WHERE version = '0.6.0';
DROP ROLE regress_up_writer;
\c postgres
DROP DATABASE audit_upgrade_040;
DROP DATABASE audit_upgrade_fresh;
DROP DATABASE audit_upgrade_010;
DROP DATABASE audit_upgrade_020;
