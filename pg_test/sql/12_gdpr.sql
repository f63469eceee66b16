-- GDPR pseudonymization. The test cluster's key file (scripts/cluster.sh) holds the
-- throwaway key test-1 = 00 01 .. 1f, so hash pseudonyms are known answers.
SET timezone = 'UTC';
\set VERBOSITY default
SELECT current_setting('audit_db.key_file') AS keyfile \gset
-- ------------------------------------------------------------- strategies
SELECT audit_pseudonymize('alice') AS hash_alice \gset
SELECT :'hash_alice' AS hash_alice,
       audit_pseudonymize('alice') = audit_pseudonymize('alice') AS deterministic,
       audit_pseudonymize('alice') <> audit_pseudonymize('bob') AS distinct_inputs;
SELECT audit_pseudonymize(NULL) IS NULL AS null_in_null_out,
       audit_pseudonymize('', 'hash') ~ '^pseudo-[0-9a-f]{64}$' AS empty_string,
       audit_pseudonymize(repeat('x', 10240), 'hash') ~ '^pseudo-[0-9a-f]{64}$' AS ten_kb;
-- Nothing passes through because of its first letters (issue 26): these are values
-- like any other.
SELECT v, audit_pseudonymize(v, 'token') = v AS unchanged
  FROM unnest(ARRAY['pseudo-abc', 'pseudonymized', 'system', 'security-scanner', 'integrity-job']) v;
-- token: random, one mapping per original, the same token every time.
SELECT audit_pseudonymize('alice', 'token') AS token_alice \gset
SELECT :'token_alice' ~ '^pseudo-[0-9a-f]{32}$' AS token_shape,
       audit_pseudonymize('alice', 'token') = :'token_alice' AS same_token,
       audit_pseudonymize('alice', 'token') <> audit_pseudonymize('bob', 'token') AS distinct_tokens;
-- encryption: deterministic, reversible with the key.
SELECT audit_pseudonymize('alice', 'encryption') AS enc_alice \gset
SELECT :'enc_alice' ~ '^pseudo-enc-[A-Za-z0-9_-]+$' AS enc_shape,
       audit_pseudonymize('alice', 'encryption') = :'enc_alice' AS deterministic;
-- Round trips, including non-ASCII, the empty string and 10 kB.
SELECT s.strategy, v.label,
       audit_depseudonymize(audit_pseudonymize(v.val, s.strategy)) = v.val AS round_trip
  FROM (VALUES ('token'), ('encryption')) s(strategy),
       (VALUES ('ascii', 'carol@example.com'), ('unicode', 'Zoë Ünïcødé 😀 東京'),
               ('empty', ''), ('10 kB', repeat('y', 10240))) v(label, val)
 ORDER BY 1, 2;
-- Every stored original is ciphertext naming its key, never the plaintext.
SELECT count(*) AS mappings,
       count(*) FILTER (WHERE original_id LIKE '%alice%' OR original_id LIKE '%carol%') AS plaintext_rows,
       count(*) FILTER (WHERE original_id ~ '^v1:test-1:' AND key_id = 'test-1') AS sealed_with_test_1
  FROM pseudonym_mapping;
-- ------------------------------------------------------------------ errors
SELECT audit_pseudonymize('alice', 'rot13');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_pseudonymize('alice', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit_depseudonymize(audit_pseudonymize('alice'));
\echo :LAST_ERROR_SQLSTATE
SELECT audit_depseudonymize('pseudo-00000000000000000000000000000000');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_depseudonymize('not a pseudonym');
\echo :LAST_ERROR_SQLSTATE
-- A flipped ciphertext byte in the mapping is rejected (rolled back afterwards).
BEGIN;
UPDATE pseudonym_mapping
   SET original_id = overlay(original_id placing
                             CASE WHEN substr(original_id, 20, 1) = 'A' THEN 'B' ELSE 'A' END from 20 for 1)
 WHERE pseudonym_id = :'token_alice';
SELECT audit_depseudonymize(:'token_alice');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Every reversal is logged, without the plaintext.
SELECT action, target_resource_id LIKE 'pseudo-%' AS names_the_pseudonym,
       count(*) FILTER (WHERE outcome_description LIKE '%alice%') AS with_plaintext
  FROM audit_log WHERE action = 'gdpr.data.depseudonymize' GROUP BY 1, 2;
-- --------------------------------------------------------------- privileges
CREATE ROLE regress_gdpr_nobody;
CREATE ROLE regress_gdpr_admin IN ROLE audit_db_admin;
SET ROLE regress_gdpr_nobody;
SELECT audit_pseudonymize('alice');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_depseudonymize(:'token_alice');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_export_subject('alice');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_forget_subject('alice');
\echo :LAST_ERROR_SQLSTATE
-- No setting, view or catalog shows the key (nor, to non-superusers, its path).
-- (SQLSTATE only: PostgreSQL 16 reworded the message.)
\set VERBOSITY sqlstate
SHOW audit_db.key_file;
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS visible_key_settings FROM pg_settings WHERE name LIKE 'audit_db.key%';
RESET ROLE;
SET ROLE regress_gdpr_admin;
SELECT audit_pseudonymize('alice') = :'hash_alice' AS admin_may_pseudonymize;
SELECT audit_depseudonymize(:'token_alice');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS settings_holding_key_bytes FROM pg_settings
 WHERE setting ~ '000102030405060708090a0b0c0d0e0f';
-- ------------------------------------------------------------ key file rules
-- A key file that others can read is refused; so is a missing or malformed one.
\set cmd 'chmod 644 ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
SELECT audit_pseudonymize('alice');
\echo :LAST_ERROR_SQLSTATE
\set cmd 'chmod 600 ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
\set cmd 'mv ' :keyfile ' ' :keyfile '.away'
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
-- The message names the file; shown with the path replaced, so no machine path is
-- part of the expected output.
DO $$
DECLARE
    hint text;
BEGIN
    PERFORM audit_pseudonymize('alice', 'token');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '%: % (hint: %)', SQLSTATE,
        replace(SQLERRM, pg_catalog.current_setting('audit_db.key_file'), '<audit_db.key_file>'), hint;
END
$$;
\set cmd 'mv ' :keyfile '.away ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
\set cmd 'cp -p ' :keyfile ' ' :keyfile '.good && echo "test-2 not-hex" >> ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
SELECT audit_pseudonymize('alice');
\echo :LAST_ERROR_SQLSTATE
\set cmd 'cp -p ' :keyfile '.good ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
SELECT audit_pseudonymize('alice') = :'hash_alice' AS key_file_back;
-- ------------------------------------------------------------------ rotation
-- A second key line becomes current; rotation re-encrypts every test-1 mapping.
\set cmd 'echo "test-2 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" >> ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
SELECT count(*) AS mappings_before FROM pseudonym_mapping WHERE key_id = 'test-1' \gset
SELECT audit_rotate_pseudonym_key('test-1') = :mappings_before AS rotated_all;
-- New events are signed by the new current key. The insert trigger checks the key
-- file at most every 100 ms of statement start time (keys::key_ring_for_inserts),
-- so the INSERT starts 100 ms after the last check: a time bound, not a wait for
-- another process.
SELECT pg_sleep(0.1);
INSERT INTO audit_log ("timestamp", organization_id, action, status)
VALUES (now(), 'org-keys', 'key.rotated', 'ok') RETURNING split_part(signature, ':', 1) AS signed_by;
SELECT key_id, count(*) AS mappings FROM pseudonym_mapping GROUP BY 1 ORDER BY 1;
SELECT count(*) FILTER (WHERE original_id !~ '^v1:test-2:') AS not_rotated FROM pseudonym_mapping;
-- Old pseudonyms still resolve and still map the same originals.
SELECT audit_depseudonymize(:'token_alice') AS token_still_resolves,
       audit_depseudonymize(:'enc_alice') AS enc_still_resolves,
       audit_pseudonymize('alice', 'token') = :'token_alice' AS same_token_after_rotation;
SELECT audit_rotate_pseudonym_key('test-2');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_rotate_pseudonym_key('nope');
\echo :LAST_ERROR_SQLSTATE
-- hash pseudonyms are bound to the key that made them: new key, new pseudonym.
SELECT audit_pseudonymize('alice') <> :'hash_alice' AS hash_changes_with_the_key;
-- And back: test-1 current again (test-2 kept as an older line), everything rotated to it.
\set cmd 'grep test-2 ' :keyfile ' > ' :keyfile '.rot && grep test-1 ' :keyfile '.good >> ' :keyfile '.rot && cat ' :keyfile '.rot > ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
SELECT audit_rotate_pseudonym_key('test-2') = :mappings_before AS rotated_back;
-- test-2 stays in the file as an older key: events signed while it was current
-- still verify (13_integrity).
SELECT audit_depseudonymize(:'token_alice') AS resolves_under_test_1,
       (SELECT count(*) FROM pseudonym_mapping WHERE key_id <> 'test-1') AS other_keys;
-- --------------------------------------------------------- concurrent tokens
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT format('host=%s port=%s dbname=%s user=postgres', current_setting('unix_socket_directories'),
              current_setting('port'), current_database()) AS conninfo \gset
SELECT dblink_connect('s1', :'conninfo'), dblink_connect('s2', :'conninfo');
SELECT dblink_exec('s1', 'BEGIN'), dblink_exec('s2', 'BEGIN');
SELECT * FROM dblink('s1', $$SELECT audit_pseudonymize('dave@example.com', 'token')$$) AS t(p text) \gset s1_
-- s2 waits for s1's uncommitted mapping (ON CONFLICT), then reads it.
SELECT dblink_send_query('s2', $$SELECT audit_pseudonymize('dave@example.com', 'token')$$);
SELECT dblink_exec('s1', 'COMMIT');
SELECT * FROM dblink_get_result('s2') AS t(p text) \gset s2_
SELECT * FROM dblink_get_result('s2') AS t(p text);
SELECT dblink_exec('s2', 'COMMIT');
SELECT :'s1_p' = :'s2_p' AS same_token,
       (SELECT count(*) FROM pseudonym_mapping WHERE pseudonym_id = :'s1_p') AS mapping_rows,
       audit_depseudonymize(:'s1_p') AS original;
SELECT dblink_disconnect('s1'), dblink_disconnect('s2');
-- ------------------------------------ the fast hash path and batches (issue 17)
-- audit_pseudonymize_hash gives audit_pseudonymize(x, 'hash')'s answer, pass-through
-- and NULL included, for a toasted value too; it is STRICT STABLE PARALLEL SAFE and
-- neither SECURITY DEFINER nor SET.
SELECT v IS NULL AS is_null, audit_pseudonymize_hash(v) IS NOT DISTINCT FROM audit_pseudonymize(v, 'hash') AS same
  FROM unnest(ARRAY['alice', '', 'zoë@example.com', 'pseudo-abc', 'system', NULL, repeat('toast', 100000)]) v;
SELECT audit_pseudonymize_hash('alice') = :'hash_alice' AS known_answer;
SELECT p.provolatile, p.proparallel, p.proisstrict, p.prosecdef, p.proconfig
  FROM pg_proc p WHERE p.oid = 'audit_pseudonymize_hash(text)'::regprocedure;
-- Run by parallel workers: the same answers as one process.
CREATE TABLE fast_src AS SELECT 'user-' || i AS v FROM generate_series(1, 20000) i;
ANALYZE fast_src;
SELECT sum(pg_catalog.hashtext(audit_pseudonymize_hash(v))) AS serial_sum FROM fast_src \gset
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
CREATE FUNCTION workers_launched(q text) RETURNS int LANGUAGE plpgsql AS $f$
DECLARE line text; n int := 0;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
        n := greatest(n, coalesce(substring(line from 'Workers Launched: (\d+)')::int, 0));
    END LOOP;
    RETURN n;
END $f$;
SELECT workers_launched('SELECT sum(pg_catalog.hashtext(audit_pseudonymize_hash(v))) FROM fast_src') > 0 AS ran_in_workers;
SELECT sum(pg_catalog.hashtext(audit_pseudonymize_hash(v))) = :serial_sum AS parallel_equals_serial FROM fast_src;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
DROP FUNCTION workers_launched(text);
DROP TABLE fast_src;
-- audit_pseudonymize_batch: element by element in order, NULL stays NULL, repeats
-- get one pseudonym, existing mappings are reused, one mapping row per new original.
SELECT count(*) AS mappings_before FROM pseudonym_mapping \gset
SELECT audit_pseudonymize_batch(ARRAY['alice', 'batch-1', NULL, 'batch-1', 'system', 'batch-2'], 'token') AS b \gset
SELECT (:'b'::text[])[1] = :'token_alice' AS existing_reused,
       (:'b'::text[])[2] = (:'b'::text[])[4] AS repeats_once,
       (:'b'::text[])[3] IS NULL AS null_kept,
       (:'b'::text[])[5] ~ '^pseudo-[0-9a-f]{32}$' AS system_pseudonymized,
       (:'b'::text[])[6] = audit_pseudonymize('batch-2', 'token') AS same_as_single_call,
       audit_depseudonymize((:'b'::text[])[2]) AS reversed,
       (SELECT count(*) FROM pseudonym_mapping) - :mappings_before AS new_mappings;
SELECT audit_pseudonymize_batch(ARRAY['alice', 'batch-3'], 'encryption')
       = ARRAY[:'enc_alice', audit_pseudonymize('batch-3', 'encryption')] AS encryption_same_as_single,
       audit_pseudonymize_batch(ARRAY['alice', NULL]) = ARRAY[:'hash_alice', NULL] AS hash_default,
       audit_pseudonymize_batch('{}'::text[], 'token') = '{}'::text[] AS empty,
       audit_pseudonymize_batch(NULL, 'token') IS NULL AS null_array;
SELECT audit_pseudonymize_batch(ARRAY['x'], 'rot13');
-- Two batches sharing an original in concurrent transactions: the second waits for
-- the first's mapping and returns it; one row per original.
SELECT dblink_connect('s1', :'conninfo'), dblink_connect('s2', :'conninfo');
SELECT dblink_exec('s1', 'BEGIN'), dblink_exec('s2', 'BEGIN');
SELECT * FROM dblink('s1', $$SELECT audit_pseudonymize_batch(ARRAY['erin', 'frank'], 'token')$$) AS t(p text[]) \gset s1_
SELECT dblink_send_query('s2', $$SELECT audit_pseudonymize_batch(ARRAY['frank', 'gina'], 'token')$$);
SELECT dblink_exec('s1', 'COMMIT');
SELECT * FROM dblink_get_result('s2') AS t(p text[]) \gset s2_
SELECT * FROM dblink_get_result('s2') AS t(p text[]);
SELECT dblink_exec('s2', 'COMMIT');
SELECT (:'s1_p'::text[])[2] = (:'s2_p'::text[])[1] AS same_token_for_frank,
       (SELECT count(*) FROM pseudonym_mapping
         WHERE pseudonym_id = ANY(:'s1_p'::text[] || :'s2_p'::text[])) AS mapping_rows,
       audit_depseudonymize((:'s2_p'::text[])[1]) AS frank,
       audit_depseudonymize((:'s2_p'::text[])[2]) AS gina;
SELECT dblink_disconnect('s1'), dblink_disconnect('s2');
-- ---------------------------------------------------------- subject operations
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 2, '2022-01-10');
INSERT INTO audit_log ("timestamp", principal_id, action, status, details) VALUES
    ('2022-01-05', 'subject-1', 'auth.login.success', 'success', '{"email": "s1@example.com", "ip": "x"}'),
    ('2022-02-05', 'subject-1', 'data.read', 'success', NULL),
    ('2022-03-05', 'subject-1', 'data.update', 'success', '{"note": "keep"}'),
    ('2022-03-06', 'subject-2', 'data.read', 'success', NULL);
SELECT audit_pseudonymize_subject('subject-1', 'token') AS rows_changed;
SELECT tableoid::regclass AS partition, principal_id = audit_pseudonymize('subject-1', 'token') AS pseudonymized,
       details->>'pseudonymized' AS marked, details ? 'pseudonymizedAt' AS dated,
       details->>'email' LIKE 'pseudo-%' AS email_pseudonymized, details->>'ip' AS ip_untouched
  FROM audit_log WHERE "timestamp" < '2022-04-01' AND principal_id <> 'subject-2' ORDER BY "timestamp";
SELECT count(*) AS left_in_clear FROM audit_log WHERE principal_id = 'subject-1';
-- Export finds the subject's rows through its pseudonyms, and only those: its 3 own
-- events (actor) and the record of its pseudonymization (target).
SELECT jsonb_array_length(audit_export_subject('subject-1')) AS exported,
       (SELECT count(*) FROM jsonb_array_elements(audit_export_subject('subject-1')) e
         WHERE e->'row'->>'principal_id' = 'subject-2') AS others,
       (SELECT string_agg(e->>'role' || ':' || (e->'row'->>'action'), ', ' ORDER BY e->>'role', e->'row'->>'action')
          FROM jsonb_array_elements(audit_export_subject('subject-1')) e) AS roles;
-- Forget: the mapping goes, the identity cannot be recovered, the trail stays.
SELECT audit_pseudonymize('subject-1', 'token') AS token_s1 \gset
SELECT audit_depseudonymize(:'token_s1') AS before_forget;
SELECT audit_forget_subject('subject-1') AS mappings_deleted;
SELECT audit_depseudonymize(:'token_s1');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS trail_rows FROM audit_log WHERE details->>'pseudonymized' = 'true' AND "timestamp" < '2022-04-01';
-- Right to erasure: compliance actions kept under the hash pseudonym, the rest deleted.
INSERT INTO audit_log ("timestamp", principal_id, action, status) VALUES
    ('2022-01-07', 'subject-3', 'auth.login.failure', 'failure'),
    ('2022-02-07', 'subject-3', 'data.read', 'success'),
    ('2022-03-07', 'subject-3', 'data.export', 'success');
SELECT * FROM audit_delete_subject('subject-3');
SELECT (SELECT count(*) FROM audit_log WHERE principal_id = 'subject-3') AS left_in_clear,
       (SELECT string_agg(action, ',') FROM audit_log WHERE principal_id = audit_pseudonymize('subject-3')) AS kept;
SELECT * FROM audit_delete_subject(NULL);
\echo :LAST_ERROR_SQLSTATE
-- Each subject operation wrote its own event.
SELECT action, count(*) FROM audit_log WHERE action LIKE 'gdpr.%' GROUP BY 1 ORDER BY 1;
-- ------------------------------------------------- classification retention
INSERT INTO audit_retention_policy (policy_name, retention_days, archive_after_days, delete_after_days,
                                    data_classification, is_active)
VALUES ('phi-short', 30, 10, 20, 'PHI', 'true'), ('public-off', 1, 1, 1, 'PUBLIC', 'false');
INSERT INTO audit_log ("timestamp", action, status, data_classification) VALUES
    (now() - interval '5 days', 'r.new', 'ok', 'PHI'),
    (now() - interval '15 days', 'r.mid', 'ok', 'PHI'),
    (now() - interval '25 days', 'r.old', 'ok', 'PHI'),
    (now() - interval '25 days', 'r.public', 'ok', 'PUBLIC');
SELECT * FROM audit_apply_retention_policies();
SELECT action, archived_at IS NOT NULL AS archived FROM audit_log WHERE action LIKE 'r.%' ORDER BY action;
SELECT * FROM audit_apply_retention_policies();
SELECT action FROM audit_log WHERE action LIKE 'r.%' ORDER BY action;
DELETE FROM audit_retention_policy;
DROP ROLE regress_gdpr_nobody;
DROP ROLE regress_gdpr_admin;
DROP EXTENSION dblink;
