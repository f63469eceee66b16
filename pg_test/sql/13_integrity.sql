-- Tamper evidence (0.6.0): every insert gets a row hash, a signature and an epoch,
-- with no shared state; audit_seal() closes epochs into signed, chained blocks;
-- verification catches edited, deleted, forged and moved rows; rows leave only
-- through audit_db, which subtracts them per epoch. Runs in a database of its own,
-- so it depends on no other test file.
CREATE DATABASE regress_integrity;
\c regress_integrity
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
RESET client_min_messages;
SET timezone = 'UTC';
\set VERBOSITY terse
-- ------------------------------------------------- the encoding, recomputed in SQL
-- An external verifier rebuilds audit_db.event.v2 byte for byte (docs): SQL's
-- sha256() and the hash pseudonyms that stand for personal values. The
-- application's own hash and hash_algorithm are kept as written.
INSERT INTO audit_log (id, "timestamp", principal_id, organization_id, action, status, hash, details)
VALUES (900001, '2026-01-02 03:04:05.678901+00', 'alice', 'org-int', 'ext.check', 'ok', 'client-supplied',
        '{"n": 1, "email": "a@x"}');
SELECT hash, hash_algorithm, signature ~ '^test-1:[0-9a-f]{64}$' AS signed, seal_epoch > 0 AS tagged,
       personal_keys, chain_seq
  FROM audit_log WHERE id = 900001;
SELECT row_hash = encode(sha256(convert_to(
           E'audit_db.event.v2\n'
        || E'id=900001\n'
        || 'timestamp=' || (extract(epoch FROM "timestamp") * 1000000)::bigint || E'\n'
        || E'ttl=~\n'
        || 'principal="' || audit_pseudonymize('alice') || E'"\n'
        || E'organization_id="org-int"\naction="ext.check"\n'
        || E'target_resource_type=~\ntarget_resource_id=~\n'
        || E'status="ok"\noutcome_description=~\n'
        || E'hash="client-supplied"\nhash_algorithm="SHA-256"\n'
        || E'event_version="1.0"\ncorrelation_id=~\n'
        || E'data_classification="INTERNAL"\nretention_policy="standard"\nprocessing_latency=~\n'
        || 'details={"n": 1, "email": "' || audit_pseudonymize('a@x') || E'"}\n'
        || 'seal_epoch=' || seal_epoch || E'\n'
        || E'personal_keys=["email"]\n', 'UTF8')), 'hex') AS externally_recomputed
  FROM audit_log WHERE id = 900001;
-- Five more rows; nothing is sealed yet: verification says so and finds nothing wrong.
INSERT INTO audit_log (id, "timestamp", principal_id, organization_id, action, status)
SELECT 900001 + i, '2026-01-02'::timestamptz + i * interval '1 minute', 'user-' || i, 'org-int', 'ext.step', 'ok'
  FROM generate_series(1, 5) i;
SELECT * FROM audit_verify_integrity();
-- Sealing: one block for the closed epoch, chained to the genesis hash and signed.
SELECT blocks, rows, open_writers, status FROM audit_seal(0);
SELECT rows, prev_hash = repeat('0', 64) AS first_block, signature ~ '^test-1:' AS signed FROM audit_seal_block;
SELECT blocks, rows, status FROM audit_seal(0);
SELECT * FROM audit_verify_integrity();
-- Savepoints rolled back leave nothing behind; a bulk load is one epoch.
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
SELECT count(*) AS rows, count(DISTINCT seal_epoch) AS epochs,
       string_agg(action, ',' ORDER BY id) FILTER (WHERE action <> 'sp.bulk') AS kept
  FROM audit_log WHERE organization_id = 'org-sp';
SELECT blocks, rows, status FROM audit_seal(0);
SELECT * FROM audit_verify_integrity();
SELECT audit_integrity_digest() AS digest \gset

-- ------------------------------------------------------------------ tampering
-- Each case runs as a superuser with the triggers off, then rolls back.
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET status = 'failure' WHERE id = 900003;
SELECT 'edited field' AS tampering, * FROM audit_verify_integrity();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM audit_log WHERE id = 900003;
SELECT 'deleted row' AS tampering, * FROM audit_verify_integrity();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO audit_log (id, "timestamp", principal_id, organization_id, action, status, row_hash, signature,
                       seal_epoch)
SELECT 900099, "timestamp" + interval '30 seconds', principal_id, organization_id, action, status, row_hash,
       signature, seal_epoch
  FROM audit_log WHERE id = 900003;
SELECT 'copied row' AS tampering, * FROM audit_verify_integrity();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET seal_epoch = seal_epoch + 1 WHERE id = 900003;
SELECT 'moved to another epoch' AS tampering, * FROM audit_verify_integrity();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET id = CASE id WHEN 900003 THEN 900004 ELSE 900003 END WHERE id IN (900003, 900004);
SELECT 'reordered pair' AS tampering, * FROM audit_verify_integrity();
ROLLBACK;
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM audit_seal_block WHERE epoch = (SELECT min(epoch) FROM audit_seal_block);
SELECT 'deleted block' AS tampering, * FROM audit_verify_integrity();
ROLLBACK;
-- Forged rows without a valid signature (unsigned, or signed with a made-up MAC):
-- counted as signature failures at once; the sealer leaves them out of every block
-- (with a WARNING), so they stay flagged after sealing too.
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO audit_log (id, "timestamp", organization_id, action, status, row_hash, signature, seal_epoch)
VALUES (900100, '2026-01-02', 'org-int', 'forged.unsigned', 'ok', repeat('a', 64), NULL,
        (SELECT max(seal_epoch) + 1 FROM audit_log)),
       (900101, '2026-01-02', 'org-int', 'forged.badsig', 'ok', repeat('b', 64), 'test-1:' || repeat('0', 64),
        (SELECT max(seal_epoch) + 1 FROM audit_log));
SELECT 'forged, unsealed' AS tampering, * FROM audit_verify_integrity();
SET LOCAL session_replication_role = origin;
SELECT blocks, rows, status FROM audit_seal(0);
SELECT 'forged, after sealing' AS tampering, * FROM audit_verify_integrity();
ROLLBACK;
-- Dropping the newest block and its rows is consistent inside the database; the
-- digest kept outside it tells.
BEGIN;
SET LOCAL session_replication_role = replica;
DELETE FROM audit_log WHERE seal_epoch = (SELECT max(epoch) FROM audit_seal_block);
DELETE FROM audit_seal_block WHERE epoch = (SELECT max(epoch) FROM audit_seal_block);
SELECT 'truncated tail' AS tampering, hash_mismatches, signature_mismatches, chain_breaks
  FROM audit_verify_integrity();
SELECT audit_integrity_digest()->'head' = (:'digest'::jsonb)->'head' AS digest_still_matches;
ROLLBACK;
-- Each run is recorded.
SELECT verification_status, verification_details->>'checked' AS checked, verification_details->>'blocks' AS blocks
  FROM audit_integrity_log WHERE verification_status IN ('PASSED', 'FAILED') ORDER BY id DESC LIMIT 1;

-- ------------------------------------------------ no session can bypass the trigger
-- A writer who turns row_security off (what pg_restore does) and supplies its own
-- evidence gets the server's instead; only a superuser's restore keeps evidence,
-- and only when its signature checks.
CREATE ROLE regress_int_writer IN ROLE audit_db_writer;
SET ROLE regress_int_writer;
SET row_security = off;
INSERT INTO audit_log (id, "timestamp", organization_id, action, status, row_hash, signature, seal_epoch)
VALUES (990200, '2026-01-02', 'org-int', 'by.writer', 'ok', repeat('f', 64), 'test-1:' || repeat('0', 64), 1);
RESET row_security;
RESET ROLE;
SELECT row_hash = repeat('f', 64) AS forged_hash_kept, signature = 'test-1:' || repeat('0', 64) AS forged_signature_kept,
       seal_epoch = 1 AS forged_epoch_kept
  FROM audit_log WHERE id = 990200;
-- A superuser re-inserting a genuine row (as a restore does) keeps its evidence.
BEGIN;
CREATE TEMP TABLE saved AS SELECT * FROM audit_log WHERE id = 900002;
SET LOCAL session_replication_role = replica;
DELETE FROM audit_log WHERE id = 900002;
SET LOCAL session_replication_role = origin;
INSERT INTO audit_log SELECT * FROM saved;
SELECT (SELECT row_hash FROM audit_log WHERE id = 900002) = (SELECT row_hash FROM saved) AS restored_row_kept;
SELECT 'genuine row restored' AS case, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();
ROLLBACK;
-- Values that look like references are hashed as they are, on insert and on
-- verification alike; changing the personal details keys does not fail older rows.
INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status, details)
VALUES ('2026-01-03', audit_pseudonymize('bob'), 'org-ref', 'ref.hash', 'ok', '{"name": "Bob"}'),
       ('2026-01-03', 'sha256:' || repeat('c', 64), 'org-ref', 'ref.sha', 'ok', NULL),
       ('2026-01-03', 'system', 'org-ref', 'ref.system', 'ok', '{"email": "ops@x"}');
SET audit_db.personal_details_keys = 'ip';
SELECT 'after a settings change' AS case, hash_mismatches, signature_mismatches, chain_breaks, unsealed
  FROM audit_verify_integrity();
RESET audit_db.personal_details_keys;

-- ------------------------------------------------------------- append-only
SET ROLE regress_int_writer;
UPDATE audit_log SET status = 'x' WHERE id = 900001;
DELETE FROM audit_log WHERE id = 900001;
RESET ROLE;
UPDATE audit_log SET status = 'x' WHERE id = 900001;
DELETE FROM audit_log WHERE id = 900001;
TRUNCATE audit_log;
-- A single partition cannot be emptied, dropped or detached behind audit_db's back,
-- not even by a superuser.
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 0, '2026-01-10');
TRUNCATE audit_log_2026_01;
DROP TABLE audit_log_2026_01;
ALTER TABLE audit_log DETACH PARTITION audit_log_2026_01;
TRUNCATE audit_log_default;
SELECT count(*) AS rows_still_there FROM audit_log_2026_01;
DROP ROLE regress_int_writer;

-- ------------------------------------------- pseudonymization keeps it verifiable
INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status, details)
SELECT '2026-01-04', s, 'org-gdpr', 'gdpr.case', 'ok', jsonb_build_object('email', s || '@x', 'n', 1)
  FROM unnest(ARRAY['p-token', 'p-hash', 'p-enc', 'p-forget', 'p-delete']) s;
SELECT audit_pseudonymize_subject('p-token', 'token') AS token,
       audit_pseudonymize_subject('p-hash', 'hash') AS hash,
       audit_pseudonymize_subject('p-enc', 'encryption') AS enc,
       audit_pseudonymize_subject('p-forget', 'token') AS to_forget;
SELECT audit_forget_subject('p-forget') AS mappings_forgotten;
SELECT * FROM audit_delete_subject('p-delete', false);
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'after GDPR' AS case, hash_mismatches, signature_mismatches, chain_breaks, unsealed
  FROM audit_verify_integrity();
SELECT epoch > 0 AS epoch, rows, reason FROM audit_seal_retired ORDER BY id;

-- ------------------------------------------------ retention, names that need quoting
CREATE SCHEMA "odd schema's";
CREATE TABLE "odd schema's"."audit_log q'x" PARTITION OF audit_log FOR VALUES FROM ('2018-01-01') TO ('2018-02-01');
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2018-01-15', 'org-ret', 'ret.odd', 'ok');
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 1, '2019-01-10');
INSERT INTO audit_log ("timestamp", organization_id, action, status)
SELECT m + interval '3 days', 'org-ret', 'ret.' || to_char(m, 'MM'), 'ok'
  FROM generate_series('2019-01-01'::timestamptz, '2019-02-01', '1 month') m;
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 month', false, '2019-06-01') ORDER BY 1;
SELECT verification_details->>'partition' AS partition, verification_details->>'sealed_rows' AS sealed_rows
  FROM audit_integrity_log WHERE verification_status = 'CHECKPOINT' ORDER BY 1;
SELECT 'after retention' AS case, hash_mismatches, signature_mismatches, chain_breaks, unsealed
  FROM audit_verify_integrity();
SELECT (audit_integrity_digest()->>'rows_retired')::int AS rows_retired;

\c postgres
DROP DATABASE regress_integrity;
