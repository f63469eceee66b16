-- Issue 18: a data subject's whole footprint. Carol is known by three identifiers: a
-- user id, an e-mail address and a patient resource id. She appears as actor, as target
-- of someone else's event, in a personal details key of that event, in error_log, in
-- error_aggregation and as an alert acknowledger. After each operation, a search of
-- every table's text for each identifier finds exactly what docs/subjects.md says, and
-- verification stays clean.
-- Runs in a database of its own, so it depends on no other test file.
CREATE DATABASE regress_subject;
\c regress_subject
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION audit_db;

-- Every row of every table of the extension's schema whose text holds an identifier:
-- "table: identifier x count", one line per table and identifier found.
CREATE FUNCTION footprint(ids text[]) RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
    t regclass;
    id text;
    n bigint;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND c.relname <> 'app_visits'
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
CREATE FUNCTION verified() RETURNS text LANGUAGE sql AS $fn$
    SELECT hash_mismatches || ',' || signature_mismatches || ',' || chain_breaks || ',' || coalesce(first_bad_id::text, '-')
      FROM audit_verify_integrity();
$fn$;

INSERT INTO audit_log ("timestamp", principal_id, action, status, target_resource_type, target_resource_id,
                       outcome_description, details) VALUES
    (now() - interval '3 hours', 'carol-uid', 'data.read', 'success', 'Document', 'doc-1', 'read her file',
     '{"email": "carol@example.com", "ip": "203.0.113.9"}'),
    (now() - interval '2 hours', 'carol-uid', 'auth.login.success', 'success', NULL, NULL, 'login',
     '{"email": "carol@example.com"}'),
    (now() - interval '1 hour', 'dr-house', 'data.read', 'success', 'Patient', 'patient-7', 'chart review',
     '{"email": "carol@example.com", "ward": "B"}'),
    (now() - interval '1 hour', 'dr-house', 'data.update', 'success', 'Patient', 'patient-7', 'called carol@example.com',
     '{}'),
    (now() - interval '30 minutes', 'dr-house', 'data.read', 'success', 'Patient', 'patient-9', 'another patient',
     '{"email": "house@example.com"}');
INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id, user_id,
                       session_id, retryable, aggregation_key, "timestamp") VALUES
    ('e-1', 'db', 'high', 'E1', 'timeout', 'api', 'read', 'c-1', 'carol-uid', 's-1', 'true', 'k-1', now()),
    ('e-2', 'db', 'high', 'E1', 'timeout', 'api', 'read', 'c-2', 'bob-uid', 's-2', 'true', 'k-1', now());
INSERT INTO error_aggregation (aggregation_key, category, severity, first_occurrence, last_occurrence, affected_users)
VALUES ('k-1', 'db', 'high', now(), now(), '["carol-uid", "bob-uid"]');
INSERT INTO alerts (id, organization_id, severity, type, title, description, source, acknowledged, acknowledged_by)
VALUES ('a-1', 'org-1', 'high', 'SECURITY', 'odd login', 'seen twice', 'ids', 'true', 'carol-uid');
SELECT blocks FROM audit_seal(0);
\set carol '''{carol-uid,carol@example.com,patient-7}''::text[]'

-- Where the persons appear: the declared map, as a DPO reviews it.
SELECT relation, column_name, role, kind, on_erasure FROM audit_subject_map ORDER BY relation::text, column_name;

SELECT * FROM footprint(:carol);

-- Export: every row and the role Carol has in it; nothing changes.
SELECT s.table_name, s.column_name, s.role, coalesce(s.row_data->>'action', s.row_data->>'id') AS what
  FROM audit_subject_rows(:carol) s;
SELECT jsonb_array_length(audit_export_subject(:carol)) AS exported;
-- CSV per table (docs/reference.md): each table's rows back in their own columns.
SELECT r.principal_id, r.action, r.target_resource_id
  FROM audit_subject_rows(:carol) s, jsonb_populate_record(NULL::audit_log, s.row_data) r
 WHERE s.table_name = 'audit_log' ORDER BY r."timestamp", r.id;
COPY (SELECT r.id, r.title, r.acknowledged_by FROM audit_subject_rows(:carol) s, jsonb_populate_record(NULL::alerts, s.row_data) r
       WHERE s.table_name = 'alerts') TO STDOUT (FORMAT csv, HEADER);
SELECT count(*) AS footprint_unchanged FROM footprint(:carol);

-- Pseudonymize (token): gone everywhere but the free text of dr-house's note
-- (outcome_description is not searched: docs/subjects.md).
BEGIN;
SELECT * FROM audit_pseudonymize_subject(:carol, 'token');
SELECT * FROM footprint(:carol);
SELECT principal_id LIKE 'pseudo-%' AS principal, target_resource_id LIKE 'pseudo-%' AS target,
       details->>'email' LIKE 'pseudo-%' AS email, details->>'ip' AS ip
  FROM audit_log WHERE action LIKE 'data.%' OR action LIKE 'auth.%' ORDER BY "timestamp", id;
SELECT audit_depseudonymize(target_resource_id) AS reversed FROM audit_log
 WHERE action = 'data.read' AND target_resource_type = 'Patient' AND target_resource_id LIKE 'pseudo-%';
SELECT verified();
-- Forget after it: the tokens cannot be reversed any more; the trail still verifies.
SELECT * FROM audit_forget_subject(:carol);
SELECT verified();
ROLLBACK;

-- Erasure: Carol's own events go except the compliance login (kept, pseudonymized with
-- its details); dr-house's events stay with the target and the mention pseudonymized;
-- her error_log row goes; the aggregation and the alert keep a pseudonym.
BEGIN;
SELECT * FROM audit_delete_subject(:carol, true);
SELECT * FROM footprint(:carol);
SELECT principal_id LIKE 'pseudo-%' AS principal, action, target_resource_id LIKE 'pseudo-%' AS target_pseudonymized,
       details->>'email' LIKE 'pseudo-%' AS email
  FROM audit_log WHERE action LIKE 'data.%' OR action LIKE 'auth.%' ORDER BY "timestamp", id;
SELECT id, user_id FROM error_log ORDER BY id;
SELECT affected_users->>1 AS other_user_kept, affected_users->>0 LIKE 'pseudo-%' AS carol_pseudonymized FROM error_aggregation;
SELECT verified();
ROLLBACK;

-- The single-text forms are the same operations for one identifier.
BEGIN;
SELECT audit_delete_subject('patient-7');
SELECT * FROM footprint(:carol);
SELECT verified();
ROLLBACK;

-- Errors.
\set VERBOSITY sqlstate
SELECT audit_pseudonymize_subject(NULL::text[]);
SELECT audit_pseudonymize_subject(ARRAY['carol-uid', NULL]);
SELECT audit_delete_subject(ARRAY[]::text[]);
SELECT audit_export_subject(ARRAY['carol-uid', ' ']);
DELETE FROM audit_subject_map WHERE relation = 'alerts'::regclass;
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('audit_log', 'outcome_description', 'mentioned');
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('audit_seal_block', 'block_hash', 'mentioned');
CREATE TABLE app_visits (id int, patient text, visits int, tags jsonb);
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('app_visits', 'nobody', 'target');
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('app_visits', 'visits', 'target');
INSERT INTO audit_subject_map (relation, column_name, role, kind) VALUES ('app_visits', 'patient', 'target', 'json_array');
CREATE ROLE regress_dpo IN ROLE audit_db_gdpr;
SET ROLE regress_dpo;
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('app_visits', 'patient', 'target');
RESET ROLE;
\set VERBOSITY default

-- A place of the user's own: covered by every operation from then on.
INSERT INTO app_visits VALUES (1, 'patient-7', 3, '["patient-7"]'), (2, 'patient-9', 1, '[]');
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('app_visits', 'patient', 'target');
INSERT INTO audit_subject_map (relation, column_name, role, kind, on_erasure) VALUES ('app_visits', 'tags', 'mentioned', 'json_array', 'delete_row');
BEGIN;
SELECT * FROM audit_delete_subject(ARRAY['patient-7'], true) WHERE table_name = 'app_visits';
SELECT count(*) AS rows_left, count(*) FILTER (WHERE patient = 'patient-7') AS in_clear FROM app_visits;
ROLLBACK;

DROP ROLE regress_dpo;
\c postgres
DROP DATABASE regress_subject;
