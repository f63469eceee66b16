-- Privilege matrix: the four roles of audit_db and a role with only what PUBLIC has,
-- first as declared (EXECUTE on every function of the extension, table privileges on
-- every table), then as behaviour: each action attempted as each role, rolled back,
-- and its outcome recorded as ok or the SQLSTATE it failed with.
SET client_min_messages = warning;
CREATE ROLE regress_m_writer LOGIN IN ROLE audit_db_writer;
CREATE ROLE regress_m_reader LOGIN IN ROLE audit_db_reader;
CREATE ROLE regress_m_admin LOGIN IN ROLE audit_db_admin;
CREATE ROLE regress_m_gdpr LOGIN IN ROLE audit_db_gdpr;
CREATE ROLE regress_m_public LOGIN;
CREATE TEMP TABLE m_roles (ord int, role name, label text);
INSERT INTO m_roles VALUES (1, 'regress_m_writer', 'writer'), (2, 'regress_m_reader', 'reader'),
    (3, 'regress_m_admin', 'admin'), (4, 'regress_m_gdpr', 'gdpr'), (5, 'regress_m_public', 'public');
GRANT SELECT ON m_roles TO PUBLIC;

-- EXECUTE on every function of the extension (X = may execute), in role order
-- writer, reader, admin, gdpr, public.
SELECT p.oid::regprocedure AS function,
       string_agg(CASE WHEN has_function_privilege(r.role, p.oid, 'EXECUTE') THEN 'X' ELSE '-' END, '' ORDER BY r.ord) AS wragp
  FROM pg_depend d
  JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
  CROSS JOIN m_roles r
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_db')
 GROUP BY p.oid ORDER BY p.oid::regprocedure::text;

-- Table privileges on every table of the extension, per role: S(ELECT) I(NSERT)
-- U(PDATE, any column) D(ELETE) T(RUNCATE), '-' where not held.
SELECT c.oid::regclass AS "table",
       string_agg(concat(
           CASE WHEN has_table_privilege(r.role, c.oid, 'SELECT') THEN 'S' ELSE '-' END,
           CASE WHEN has_table_privilege(r.role, c.oid, 'INSERT') THEN 'I' ELSE '-' END,
           CASE WHEN has_any_column_privilege(r.role, c.oid, 'UPDATE') THEN 'U' ELSE '-' END,
           CASE WHEN has_table_privilege(r.role, c.oid, 'DELETE') THEN 'D' ELSE '-' END,
           CASE WHEN has_table_privilege(r.role, c.oid, 'TRUNCATE') THEN 'T' ELSE '-' END), ' ' ORDER BY r.ord)
         AS "writer reader admin gdpr  public"
  FROM pg_depend d
  JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid AND c.relkind IN ('r', 'p')
  CROSS JOIN m_roles r
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_db')
 GROUP BY c.oid ORDER BY c.oid::regclass::text;

-- Behaviour. Each action runs as each role in a subtransaction that is always rolled
-- back (a successful action raises a marker error), so every attempt sees the same data.
INSERT INTO audit_log ("timestamp", organization_id, principal_id, action, status)
VALUES (now(), 'org-m', 'matrix-subject', 'matrix.seed', 'ok');
SELECT audit_pseudonymize('matrix-secret', 'token') AS token \gset
SELECT current_setting('audit_db.key_file') AS key_file \gset
CREATE TEMP TABLE m_actions (ord int, action text, stmt text);
INSERT INTO m_actions VALUES
 (1,  'insert event',          $$INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'matrix.insert', 'ok')$$),
 (2,  'insert error',          $$INSERT INTO error_log (id, category, severity, code, message, component, operation, correlation_id, retryable, aggregation_key, "timestamp") VALUES ('m1', 'c', 's', 'E1', 'm', 'c', 'o', 'r', 'false', 'k', now())$$),
 (3,  'read events',           $$SELECT count(*) FROM audit_log$$),
 (4,  'read pseudonym map',    $$SELECT count(*) FROM pseudonym_mapping$$),
 (5,  'update event',          $$UPDATE audit_log SET status = 'forged' WHERE action = 'matrix.seed'$$),
 (6,  'delete event',          $$DELETE FROM audit_log WHERE action = 'matrix.seed'$$),
 (7,  'truncate events',       $$TRUNCATE audit_log$$),
 (8,  'forge a seal block',    $$INSERT INTO audit_seal_block (epoch, rows, sum, prev_hash, block_hash) VALUES (999999, 0, repeat('0', 64), repeat('0', 64), repeat('0', 64))$$),
 (9,  'write chain head',      $$UPDATE audit_chain_head SET seq = seq + 1$$),
 (10, 'maintain partitions',   $$SELECT count(*) FROM audit_partition_maintenance()$$),
 (11, 'create partitions',     $$SELECT count(*) FROM audit_create_partitions('audit_log', 1)$$),
 (12, 'drop partitions',       $$SELECT count(*) FROM audit_drop_expired_partitions('audit_log', '100 years')$$),
 (13, 'tune partition config', $$UPDATE audit_partition_config SET premake = 7 WHERE parent = 'audit_log'::regclass$$),
 (14, 'convert table',         $$SELECT audit_convert_to_partitioned('audit_log')$$),
 (15, 'list partitions',       $$SELECT count(*) FROM audit_partitions()$$),
 (16, 'verify integrity',      $$SELECT count(*) FROM audit_verify_integrity()$$),
 (17, 'verify schema',         $$SELECT count(*) FROM audit_verify_schema()$$),
 (18, 'pseudonymize',          $$SELECT audit_pseudonymize('someone')$$),
 (19, 'pseudonymize subject',  $$SELECT audit_pseudonymize_subject('matrix-subject')$$),
 (20, 'depseudonymize',        format('SELECT audit_depseudonymize(%L)', :'token')),
 (21, 'export subject',        $$SELECT audit_export_subject('matrix-subject')$$),
 (22, 'forget subject',        $$SELECT audit_forget_subject('matrix-subject')$$),
 (23, 'delete subject',        $$SELECT audit_delete_subject('matrix-subject')$$),
 (24, 'apply retention',       $$SELECT count(*) FROM audit_apply_retention_policies()$$),
 -- (the test key file has one key: rotating away from the current key is 22023, past
 -- the privilege check)
 (25, 'rotate key',            $$SELECT audit_rotate_pseudonym_key('test-1')$$),
 (26, 'read key file setting', $$SHOW audit_db.key_file$$),
 (27, 'read key file',         format('SELECT pg_read_file(%L)', :'key_file')),
 (28, 'read migrations',       $$SELECT count(*) FROM audit_migrations()$$),
 (29, 'pseudonymize (hash)',   $$SELECT audit_pseudonymize_hash('someone')$$),
 (30, 'pseudonymize batch',    $$SELECT audit_pseudonymize_batch(ARRAY['someone'], 'token')$$);
CREATE TEMP TABLE m_outcome (action_ord int, role_ord int, outcome text);

DO $matrix$
DECLARE
    a record;
    r record;
    result text;
BEGIN
    FOR a IN SELECT * FROM m_actions ORDER BY ord LOOP
        FOR r IN SELECT * FROM m_roles ORDER BY ord LOOP
            BEGIN
                EXECUTE format('SET LOCAL ROLE %I', r.role);
                EXECUTE a.stmt;
                RAISE EXCEPTION 'matrix: ok' USING ERRCODE = 'P0099';
            EXCEPTION WHEN OTHERS THEN
                result := CASE WHEN SQLSTATE = 'P0099' THEN 'ok' ELSE SQLSTATE END;
            END;
            INSERT INTO m_outcome VALUES (a.ord, r.ord, result);
        END LOOP;
    END LOOP;
END
$matrix$;

SELECT a.action,
       max(o.outcome) FILTER (WHERE o.role_ord = 1) AS writer,
       max(o.outcome) FILTER (WHERE o.role_ord = 2) AS reader,
       max(o.outcome) FILTER (WHERE o.role_ord = 3) AS admin,
       max(o.outcome) FILTER (WHERE o.role_ord = 4) AS gdpr,
       max(o.outcome) FILTER (WHERE o.role_ord = 5) AS public
  FROM m_actions a JOIN m_outcome o ON o.action_ord = a.ord
 GROUP BY a.ord, a.action ORDER BY a.ord;

-- The admin's maintenance run has no failed step.
BEGIN;
SET LOCAL ROLE regress_m_admin;
SELECT parent, action, partition, detail FROM audit_partition_maintenance() WHERE action = 'failed';
ROLLBACK;

-- The attempts left nothing behind.
SELECT count(*) AS matrix_events FROM audit_log WHERE action LIKE 'matrix.%';
SELECT count(*) AS problems FROM audit_verify_schema();

DROP TABLE m_roles, m_actions, m_outcome;
DROP ROLE regress_m_writer, regress_m_reader, regress_m_admin, regress_m_gdpr, regress_m_public;
RESET client_min_messages;
