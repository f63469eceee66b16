-- Who may do what with the tables and functions (DESIGN.md §7).
CREATE ROLE regress_writer LOGIN IN ROLE audit_db_writer;
CREATE ROLE regress_reader LOGIN IN ROLE audit_db_reader;
CREATE ROLE regress_admin LOGIN IN ROLE audit_db_admin;
CREATE ROLE regress_nobody LOGIN;

SET ROLE regress_writer;
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'priv.write', 'ok');
SELECT count(*) FROM audit_log;
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SET ROLE regress_reader;
SELECT action FROM audit_log;
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'priv.read', 'ok');
\echo :LAST_ERROR_SQLSTATE
UPDATE audit_log SET status = 'x';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM audit_log;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS partitions FROM audit_partitions() WHERE is_default;
RESET ROLE;

-- Admins maintain the extension's tables without owning them (SECURITY DEFINER) ...
SET ROLE regress_admin;
SELECT * FROM audit_create_partitions('audit_log', 0, '2018-02-02');
SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log_2018_02';
SELECT count(*) FROM audit_log;
RESET ROLE;
-- ... but not someone else's partitioned table.
CREATE TABLE other_parent (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
GRANT SELECT ON other_parent TO audit_db_admin;
SET ROLE regress_admin;
SELECT * FROM audit_create_partitions('other_parent', 0, '2018-02-02');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Its owner may.
ALTER TABLE other_parent OWNER TO regress_nobody;
SET ROLE regress_nobody;
SELECT audit_create_partitions('other_parent');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) TO regress_nobody;
SET ROLE regress_nobody;
SELECT * FROM audit_create_partitions('other_parent', 0, '2018-02-02');
SELECT tableowner FROM pg_tables WHERE tablename = 'other_parent_2018_02';
RESET ROLE;
DROP TABLE other_parent;
REVOKE EXECUTE ON FUNCTION audit_create_partitions(regclass, integer, timestamptz) FROM regress_nobody;

SET ROLE regress_nobody;
SELECT count(*) FROM audit_log;
\echo :LAST_ERROR_SQLSTATE
SELECT audit_create_partitions();
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit_partitions();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- PUBLIC holds no EXECUTE on the extension's functions.
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p WHERE p.proname LIKE 'audit\_%' ORDER BY 1;

DROP ROLE regress_writer, regress_reader, regress_admin, regress_nobody;
