\pset footer off
\echo '== CREATE EXTENSION audit_db: the whole schema, with partitions ready'
CREATE EXTENSION audit_db;
SELECT partition, range_from, range_to, is_default FROM audit_partitions('audit_log');

\echo '== events land in their month; one from 1999 goes to the DEFAULT partition'
INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status, details)
VALUES (now(), 'user-42', 'org-1', 'auth.login.success', 'success', '{"ip": "203.0.113.7"}'),
       (now() + interval '1 month', 'user-42', 'org-1', 'data.read', 'success', NULL),
       ('1999-12-31 23:00:00+00', 'user-7', 'org-1', 'legacy.import', 'success', NULL);
SELECT id, "timestamp", action, tableoid::regclass AS stored_in FROM audit_log ORDER BY id;

\echo '== audit_create_partitions() is idempotent: a second call creates nothing'
SELECT count(*) AS created FROM audit_create_partitions();

\echo '== creating December 1999 moves the DEFAULT row into its new partition'
SELECT * FROM audit_create_partitions('audit_log', 0, '1999-12-15');
SELECT id, action, tableoid::regclass AS stored_in FROM audit_log WHERE action = 'legacy.import';

\echo '== partition listing'
ANALYZE audit_log;
SELECT partition, range_from, range_to, is_default, row_estimate, pg_size_pretty(total_bytes) AS size
  FROM audit_partitions('audit_log');

\echo '== one maintenance call (the job to schedule with pg_cron): create ahead, drop by retention'
UPDATE audit_partition_config SET retention = '24 months' WHERE parent = 'audit_log'::regclass;
SELECT * FROM audit_partition_maintenance();
SELECT total_partitions, total_rows, recommendations FROM audit_analyze_partitions();

\echo '== the migration journal, and a schema exactly as shipped'
SELECT version, name, left(checksum, 16) AS checksum, execution_ms FROM audit_migrations();
SELECT count(*) AS drifts FROM audit_verify_schema();

\echo '== GDPR: pseudonyms from the server-side key file (never through SQL)'
SELECT audit_pseudonymize('alice@example.com') AS hash,
       audit_pseudonymize('alice@example.com', 'token') AS token;
SELECT audit_depseudonymize(audit_pseudonymize('alice@example.com', 'encryption')) AS reversed;
SELECT strategy, key_id, left(original_id, 24) || '...' AS original_id_is_ciphertext FROM pseudonym_mapping;

\echo '== tamper evidence: every event hashed and signed on insert (no lock), sealed into signed blocks'
SELECT id, action, left(row_hash, 16) AS row_hash, left(signature, 16) AS signature, seal_epoch FROM audit_log ORDER BY id LIMIT 3;
SELECT * FROM audit_seal();
SELECT epoch, rows, left(block_hash, 16) AS block_hash, left(signature, 16) AS signature FROM audit_seal_block;
SELECT * FROM audit_verify_integrity();
\echo '== and it is append-only, even for a superuser: the UPDATE is refused (shown, not fatal)'
DO $$
BEGIN
    UPDATE audit_log SET status = 'tampered';
    RAISE EXCEPTION 'audit_log accepted an UPDATE';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'refused as expected: % (SQLSTATE %)', SQLERRM, SQLSTATE;
END
$$;
