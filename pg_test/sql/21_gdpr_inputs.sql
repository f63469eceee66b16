-- Issue 26: the subject functions on every input. Every details value PostgreSQL
-- accepts (object, array, string, number, bool, JSON null, SQL NULL, nesting far past
-- 128 levels); erasure and forgetting after pseudonymization; identifiers that start
-- with pseudo/system/security; a pseudonym too long for its column; mentions at any
-- depth in the original's jsonb columns. After each step verification stays clean.
-- Runs in a database of its own, so it depends on no other test file.
CREATE DATABASE regress_gdpr_inputs;
\c regress_gdpr_inputs
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION audit_db;
CREATE FUNCTION verified() RETURNS text LANGUAGE sql AS $fn$
    SELECT hash_mismatches || ',' || signature_mismatches || ',' || chain_breaks || ',' || coalesce(first_bad_id::text, '-')
      FROM audit_verify_integrity();
$fn$;
-- Every row of every table of the extension's schema whose text holds an identifier.
CREATE FUNCTION footprint(ids text[]) RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
    t regclass;
    id text;
    n bigint;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
              ORDER BY c.relname LOOP
        FOREACH id IN ARRAY ids LOOP
            EXECUTE format('SELECT count(*) FROM %s t WHERE strpos(t::text, $1) > 0', t) INTO n USING id;
            IF n > 0 THEN
                RETURN NEXT t::text || ': ' || id || ' x ' || n;
            END IF;
        END LOOP;
    END LOOP;
END
$fn$;

-- ------------------------------------------------ 1. every details value
INSERT INTO audit_log ("timestamp", principal_id, action, status, details) VALUES
    (now(), 'carol@example.com', 'shape.object', 'ok', '{"email": "carol@example.com", "n": [1, {"x": null}]}'),
    (now(), 'carol@example.com', 'shape.array', 'ok', '[1, "carol@example.com"]'),
    (now(), 'carol@example.com', 'shape.string', 'ok', '"text"'),
    (now(), 'carol@example.com', 'shape.number', 'ok', '12.50'),
    (now(), 'carol@example.com', 'shape.bool', 'ok', 'true'),
    (now(), 'carol@example.com', 'shape.json_null', 'ok', 'null'),
    (now(), 'carol@example.com', 'shape.sql_null', 'ok', NULL),
    (now(), 'carol@example.com', 'shape.deep', 'ok', (repeat('[', 5000) || '"x"' || repeat(']', 5000))::jsonb),
    (now(), 'carol@example.com', 'shape.deep_object', 'ok',
     jsonb_build_object('email', 'carol@example.com', 'ip', '203.0.113.9',
                        'deep', (repeat('[', 200) || '1' || repeat(']', 200))::jsonb)),
    -- someone else's event naming carol 300 levels down, and hostile writers' rows
    (now(), 'dr-house', 'mention.deep', 'ok',
     jsonb_build_object('deep', (repeat('{"a": ', 300) || '"carol@example.com"' || repeat('}', 300))::jsonb)),
    (now(), 'writer', 'hostile.array', 'ok', '[1]'),
    (now(), 'writer', 'hostile.keys', 'ok', '["email"]');
CREATE TEMP TABLE before AS SELECT id, action, details FROM audit_log;
-- A personal key next to a 200-level array is recorded (serde_json stops at 128).
SELECT action, personal_keys FROM audit_log WHERE action LIKE 'shape.deep%' ORDER BY action;
-- Every subject function runs; export finds carol at any depth (10 rows: 9 as actor,
-- 1 mentioned 300 levels down).
SELECT role, count(*) FROM audit_subject_rows(ARRAY['carol@example.com']) WHERE table_name = 'audit_log'
 GROUP BY role ORDER BY role;
SELECT jsonb_array_length(audit_export_subject(ARRAY['carol@example.com'])) AS exported;
SELECT count(*) AS nobody FROM audit_subject_rows(ARRAY['nobody@example.com']);
SELECT * FROM audit_pseudonymize_subject(ARRAY['writer'], 'hash') WHERE rows > 0;
SELECT * FROM audit_pseudonymize_subject(ARRAY['carol@example.com'], 'token') WHERE rows > 0;
-- Values other than objects are left exactly as they were; objects keep every
-- non-personal member and get the markers; no personal value is left in clear.
SELECT b.action,
       a.details IS NOT DISTINCT FROM b.details AS unchanged,
       CASE WHEN jsonb_typeof(b.details) = 'object'
            THEN (a.details - 'pseudonymized' - 'pseudonymizedAt' - 'email' - 'ip') = (b.details - 'email' - 'ip') END
            AS rest_unchanged,
       a.details ? 'pseudonymized' AS marked,
       a.principal_id ~ '^pseudo-[0-9a-f]{32}$' AS principal_token
  FROM audit_log a JOIN before b USING (id) ORDER BY b.action;
SELECT count(*) AS clear_email_left FROM audit_log
 WHERE jsonb_typeof(details) = 'object' AND details ->> 'email' = 'carol@example.com';
SELECT (details -> 'deep') = (SELECT details -> 'deep' FROM before WHERE action = 'mention.deep') AS nested_mention_kept
  FROM audit_log WHERE action = 'mention.deep';
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'after pseudonymizing every shape' AS step, verified();

-- --------------------------- 2. erasure and forgetting after pseudonymization
INSERT INTO audit_log ("timestamp", principal_id, action, status, target_resource_type, target_resource_id, details) VALUES
    (now(), 'dave@example.com', 'data.read', 'ok', NULL, NULL, '{"email": "dave@example.com"}'),
    (now(), 'dave@example.com', 'auth.login.success', 'ok', NULL, NULL, '[2]'),
    (now(), 'erin@example.com', 'data.read', 'ok', NULL, NULL, '{"email": "erin@example.com"}'),
    (now(), 'erin@example.com', 'auth.login.success', 'ok', NULL, NULL, NULL),
    (now(), 'dr-house', 'data.read', 'ok', 'Patient', 'erin@example.com', '{"email": "erin@example.com"}');
SELECT * FROM audit_pseudonymize_subject(ARRAY['dave@example.com'], 'token') WHERE rows > 0;
SELECT audit_pseudonymize('dave@example.com', 'token') AS dave_token \gset
SELECT * FROM audit_delete_subject(ARRAY['dave@example.com'], false) WHERE rows > 0;
SELECT count(*) AS dave_rows_left FROM audit_log WHERE principal_id IN ('dave@example.com', :'dave_token');
\set VERBOSITY terse
SELECT audit_depseudonymize(:'dave_token');
\set VERBOSITY default
-- erin: token, forget, then erasure that keeps the compliance event.
SELECT * FROM audit_pseudonymize_subject(ARRAY['erin@example.com'], 'token') WHERE rows > 0;
SELECT audit_forget_subject(ARRAY['erin@example.com']);
SELECT count(*) AS erin_names FROM unnest(audit_subject_names(ARRAY['erin@example.com'])) n
 WHERE n ~ '^pseudo-[0-9a-f]{32}$';
SELECT * FROM audit_delete_subject(ARRAY['erin@example.com'], true) WHERE rows > 0;
SELECT action, principal_id ~ '^pseudo-' AS pseudonymized FROM audit_log
 WHERE action IN ('data.read', 'auth.login.success') AND "timestamp" > now() - interval '1 hour'
   AND principal_id <> 'dr-house' ORDER BY action;
SELECT * FROM footprint(ARRAY['dave@example.com', 'erin@example.com']);
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'after erasure of pseudonymized subjects' AS step, verified();

-- ----------------------------------- 3. no identifier passes by its prefix
SELECT v, audit_pseudonymize(v, 'token') <> v AS token_made, audit_pseudonymize(v, 'hash') <> v AS hash_made,
       audit_pseudonymize_hash(v) = audit_pseudonymize(v, 'hash') AS fast_path_agrees
  FROM unnest(ARRAY['security.officer@corp.com', 'systemadmin@corp.com', 'pseudo.lover@corp.com', 'integrity@corp.com']) v;
-- What is a pseudonym already stays one: a hash pseudonym by its whole shape, a token
-- or encryption pseudonym because the mapping table (or the key) knows it.
SELECT audit_pseudonymize(audit_pseudonymize('x1'), 'token') = audit_pseudonymize('x1') AS hash_kept,
       audit_pseudonymize(audit_pseudonymize('x1', 'token'), 'hash') = audit_pseudonymize('x1', 'token') AS token_kept,
       audit_pseudonymize(audit_pseudonymize('x1', 'encryption'), 'token') = audit_pseudonymize('x1', 'encryption') AS enc_kept,
       audit_pseudonymize('pseudo-0123456789abcdef0123456789abcdef', 'token') <> 'pseudo-0123456789abcdef0123456789abcdef'
           AS unknown_token_shape_pseudonymized;
INSERT INTO audit_log ("timestamp", principal_id, action, status, target_resource_type, target_resource_id, details) VALUES
    (now(), 'systemadmin@corp.com', 'data.read', 'ok', NULL, NULL, '{"email": "systemadmin@corp.com"}'),
    (now(), 'systemadmin@corp.com', 'auth.login.success', 'ok', NULL, NULL, '{"email": "systemadmin@corp.com"}'),
    (now(), 'dr-house', 'data.read', 'ok', 'User', 'security.officer@corp.com', '{"email": "security.officer@corp.com"}');
SELECT * FROM audit_delete_subject(ARRAY['security.officer@corp.com', 'systemadmin@corp.com']) WHERE rows > 0;
SELECT * FROM footprint(ARRAY['security.officer@corp.com', 'systemadmin@corp.com']);
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'after erasure of look-alike identifiers' AS step, verified();

-- ------------------------ 4. a pseudonym longer than the column is refused
INSERT INTO audit_log ("timestamp", principal_id, action, status) VALUES (now(), repeat('l', 200), 'data.read', 'ok');
SELECT count(*) AS mappings_before FROM pseudonym_mapping \gset
\set VERBOSITY default
SELECT * FROM audit_pseudonymize_subject(ARRAY[repeat('l', 200)], 'encryption');
\set VERBOSITY terse
SELECT (SELECT count(*) FROM pseudonym_mapping) - :mappings_before AS new_mappings,
       (SELECT count(*) FROM audit_log WHERE principal_id = repeat('l', 200)) AS row_unchanged;
SELECT * FROM audit_pseudonymize_subject(ARRAY[repeat('l', 200)], 'token') WHERE rows > 0;

-- -------------------------- 5. mentions at any depth in the original's jsonb
INSERT INTO error_aggregation (aggregation_key, category, severity, first_occurrence, last_occurrence, samples)
VALUES ('k-1', 'db', 'high', now(), now(), '[{"user": {"email": "frank@example.com"}, "n": 1}]');
INSERT INTO alerts (id, organization_id, severity, type, title, description, source, metadata)
VALUES ('a-1', 'org-1', 'high', 'SECURITY', 'odd login', 'seen', 'ids', '{"who": ["x", "frank@example.com"]}');
INSERT INTO scheduled_reports (id, name, organization_id, criteria, format, schedule, delivery, created_by, report_type, export)
VALUES ('r-1', 'weekly', 'org-1', '{"principals": ["frank@example.com"]}', 'csv', '{}',
        '{"recipients": [{"to": "frank@example.com"}]}', 'admin', 'audit', '{}');
INSERT INTO config_change_event ("timestamp", field, previous_value, new_value, changed_by, environment)
VALUES (now(), 'owners', '[]', '{"owners": {"primary": "frank@example.com"}}', 'admin', 'prod');
SELECT table_name, column_name, role FROM audit_subject_rows(ARRAY['frank@example.com']) ORDER BY 1, 2;
SELECT * FROM audit_delete_subject(ARRAY['frank@example.com']) WHERE rows > 0 ORDER BY 1, 2;
SELECT * FROM footprint(ARRAY['frank@example.com']);
SELECT samples -> 0 -> 'n' AS other_values_kept FROM error_aggregation;
SELECT blocks >= 0 AS sealed FROM audit_seal(0);
SELECT 'at the end' AS step, verified();

\c postgres
DROP DATABASE regress_gdpr_inputs;
