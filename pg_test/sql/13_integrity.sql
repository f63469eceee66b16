-- Tamper evidence: hash, signature and per-organization chain on every insert;
-- verification catches edits, deletions, forged rows and reordering; the trail is
-- append-only; retention and erasure leave checkpoints the chain verifies across.
SET timezone = 'UTC';
\set VERBOSITY default
-- Everything earlier tests wrote verifies (rows of forgotten subjects cannot be
-- re-derived and are reported, not counted as tampering).
SELECT checked > 0 AS checked_some, hash_mismatches, signature_mismatches, chain_breaks, first_bad_id
  FROM audit_verify_integrity();
-- ------------------------------------------------- the encoding, recomputed in SQL
-- An external verifier rebuilds audit_db.event.v1 byte for byte (README): here with
-- SQL's sha256() and the hash pseudonyms that stand for personal values.
INSERT INTO audit_log (id, "timestamp", principal_id, organization_id, action, status, hash, details)
VALUES (900001, '2026-01-02 03:04:05.678901+00', 'alice', 'org-int', 'ext.check', 'ok', 'client-supplied',
        '{"n": 1, "email": "a@x"}');
SELECT hash <> 'client-supplied' AS client_hash_replaced, hash_algorithm, signature ~ '^test-1:[0-9a-f]{64}$' AS signed,
       chain_seq, chain_hash ~ '^[0-9a-f]{64}$' AS chained
  FROM audit_log WHERE id = 900001;
SELECT hash = encode(sha256(convert_to(
           E'audit_db.event.v1\n'
        || E'id=900001\n'
        || 'timestamp=' || (extract(epoch FROM "timestamp") * 1000000)::bigint || E'\n'
        || E'ttl=~\n'
        || 'principal="' || audit_pseudonymize('alice') || E'"\n'
        || E'organization_id="org-int"\n'
        || E'action="ext.check"\n'
        || E'target_resource_type=~\ntarget_resource_id=~\n'
        || E'status="ok"\n'
        || E'outcome_description=~\n'
        || E'event_version="1.0"\n'
        || E'correlation_id=~\n'
        || E'data_classification="INTERNAL"\n'
        || E'retention_policy="standard"\n'
        || E'processing_latency=~\n'
        || 'details={"email":"' || audit_pseudonymize('a@x') || E'","n":1}\n', 'UTF8')), 'hex')
       AS externally_recomputed,
       chain_hash = encode(sha256(convert_to(repeat('0', 64) || hash, 'UTF8')), 'hex') AS first_link
  FROM audit_log WHERE id = 900001;
-- A small chain of its own for the tampering cases.
INSERT INTO audit_log (id, "timestamp", principal_id, organization_id, action, status)
SELECT 900001 + i, '2026-01-02'::timestamptz + i * interval '1 minute', 'user-' || i, 'org-int', 'ext.step', 'ok'
  FROM generate_series(1, 5) i;
SELECT string_agg(chain_seq::text, ',' ORDER BY id) AS seqs FROM audit_log WHERE organization_id = 'org-int';
SELECT * FROM audit_verify_integrity('2026-01-01', '2026-01-03');
-- A transaction keeps the chain head in memory: savepoints rolled back leave no gap,
-- and a bulk load is one contiguous run.
BEGIN;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-05', 'org-sp', 'sp.1', 'ok');
SAVEPOINT s1;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-05', 'org-sp', 'sp.gone', 'ok');
SAVEPOINT s2;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-05', 'org-sp', 'sp.gone.too', 'ok');
ROLLBACK TO s1;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-05', 'org-sp', 'sp.2', 'ok');
SAVEPOINT s3;
INSERT INTO audit_log ("timestamp", organization_id, action, status)
SELECT '2026-01-05', 'org-sp', 'sp.bulk', 'ok' FROM generate_series(1, 500);
RELEASE s3;
COMMIT;
SELECT count(*) AS rows, min(chain_seq), max(chain_seq),
       (SELECT seq FROM audit_chain_head WHERE chain_key = 'org-sp') AS head_seq,
       string_agg(action, ',' ORDER BY chain_seq) FILTER (WHERE action <> 'sp.bulk') AS kept
  FROM audit_log WHERE organization_id = 'org-sp';
SELECT hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity('2026-01-05', '2026-01-06');

-- ------------------------------------------------------------------ tampering
-- Each case runs as a superuser bypassing the triggers, then rolls back.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET status = 'failure' WHERE id = 900003;
SELECT 'edited field' AS tampering, * FROM audit_verify_integrity('2026-01-01', '2026-01-03');
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM audit_log WHERE id = 900003;
SELECT 'deleted row' AS tampering, * FROM audit_verify_integrity('2026-01-01', '2026-01-03');
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM audit_log WHERE id = 900006;
SELECT 'deleted last row' AS tampering, hash_mismatches, signature_mismatches, chain_breaks, first_bad_id
  FROM audit_verify_integrity();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO audit_log (id, "timestamp", principal_id, organization_id, action, status, hash, hash_algorithm,
                       signature, chain_seq, chain_hash)
SELECT 900099, "timestamp" + interval '30 seconds', principal_id, organization_id, 'forged', status, hash,
       hash_algorithm, signature, chain_seq + 1, chain_hash
  FROM audit_log WHERE id = 900003;
SELECT 'forged row' AS tampering, * FROM audit_verify_integrity('2026-01-01', '2026-01-03');
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET chain_seq = CASE id WHEN 900003 THEN 4 ELSE 3 END WHERE id IN (900003, 900004);
SELECT 'reordered pair' AS tampering, * FROM audit_verify_integrity('2026-01-01', '2026-01-03');
ROLLBACK;
-- Each run is recorded.
SELECT verification_status, verification_details->>'checked' AS checked
  FROM audit_integrity_log WHERE verification_status IN ('PASSED', 'FAILED') ORDER BY id DESC LIMIT 1;
-- ------------------------------------------------------------- append-only
CREATE ROLE regress_int_writer IN ROLE audit_db_writer;
SET ROLE regress_int_writer;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-02 01:00', 'org-int', 'by.writer', 'ok');
UPDATE audit_log SET status = 'x' WHERE id = 900001;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
UPDATE audit_log SET status = 'x' WHERE id = 900001;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM audit_log WHERE id = 900001;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE audit_log;
\echo :LAST_ERROR_SQLSTATE
DROP ROLE regress_int_writer;
-- ------------------------------------------- pseudonymization keeps it verifiable
SELECT audit_pseudonymize_subject('user-2', 'token') AS pseudonymized;
SELECT audit_pseudonymize_subject('user-3', 'hash') AS pseudonymized;
SELECT * FROM audit_verify_integrity('2026-01-01', '2026-01-03');
-- ------------------------------------------------ retention leaves checkpoints
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 2, '2019-01-10');
INSERT INTO audit_log ("timestamp", organization_id, action, status)
SELECT m + interval '3 days', 'org-ret', 'ret.' || to_char(m, 'MM'), 'ok'
  FROM generate_series('2019-01-01'::timestamptz, '2019-03-01', '1 month') m;
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 month', false, '2019-04-01');
SELECT verification_details->>'partition' AS partition, verification_details->>'rows' AS rows,
       verification_details->'chains'->'org-ret'->>'last_seq' AS last_seq
  FROM audit_integrity_log WHERE verification_status = 'CHECKPOINT'
   AND verification_details->>'partition' LIKE 'audit_log_2019_%' ORDER BY 1;
SELECT chain_key, from_seq, to_seq, rows FROM audit_chain_retired WHERE chain_key = 'org-ret';
SELECT hash_mismatches, signature_mismatches, chain_breaks, first_bad_id FROM audit_verify_integrity();
-- -------------------------------------------------------------------- digest
SELECT (audit_integrity_digest('2026-01-03')->'chains'->'org-int') - 'head_chain_hash' AS org_int_head;
SELECT audit_integrity_digest('2026-01-03') AS digest \gset
BEGIN;
-- A superuser rewriting the whole chain consistently is still caught by the digest.
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET chain_hash = md5(chain_hash) || md5(chain_hash) WHERE organization_id = 'org-int';
SELECT (audit_integrity_digest('2026-01-03')->'chains'->'org-int') = (:'digest'::jsonb->'chains'->'org-int')
       AS digest_still_matches;
ROLLBACK;
