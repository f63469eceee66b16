-- Issue 25, as a hostile user would try it: each case is an attempt by a role of
-- audit_db (or by nobody) to become superuser, to stop the log, or to leave an edit
-- verification does not report. Every check has an exact expected outcome (a SQLSTATE,
-- a count, a role attribute). Runs in a database of its own, with roles of its own.
-- No CONTEXT lines, and no server WARNINGs whose wording differs between versions.
\set SHOW_CONTEXT never
CREATE DATABASE regress_security;
\c regress_security
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
RESET client_min_messages;
SET timezone = 'UTC';
CREATE ROLE sec_writer IN ROLE audit_db_writer;
CREATE ROLE sec_admin IN ROLE audit_db_admin;
CREATE ROLE sec_gdpr IN ROLE audit_db_gdpr;
CREATE ROLE sec_nobody;
CREATE ROLE sec_reader_role IN ROLE audit_db_reader;
GRANT CREATE ON SCHEMA public TO sec_gdpr, sec_admin;
-- What any role is, after each attempt: no attribute and no membership gained.
CREATE FUNCTION sec_roles() RETURNS TABLE(role name, superuser boolean, memberships bigint)
LANGUAGE sql AS $$
    SELECT r.rolname, r.rolsuper,
           (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)
      FROM pg_roles r WHERE r.rolname LIKE 'sec\_%' ORDER BY 1
$$;

-- ------------------------------------------------ 1. the id sequence (item 2)
-- A writer's explicit id past the sequence is refused (22023) and moves nothing,
-- rolled back or not; the sequence goes on where it was.
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'sec.first', 'ok') RETURNING id AS first_id \gset
SET ROLE sec_writer;
BEGIN;
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (9223372036854775807, now(), 'x', 'ok');
ROLLBACK;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (9223372036854775806, now(), 'x', 'ok');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (:first_id + 1000, now(), 'x', 'ok');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT last_value = :first_id AS sequence_not_moved FROM audit_log_id_seq;
-- A gap the sequence left (a rolled-back default) may be filled explicitly, once.
BEGIN;
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'sec.gap', 'ok') RETURNING id AS gap_id \gset
ROLLBACK;
SET ROLE sec_writer;
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (:gap_id, now(), 'sec.gap filled', 'ok');
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (:gap_id, now(), 'sec.gap again', 'ok');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'sec.after', 'ok');
RESET ROLE;
SELECT action, id - :first_id AS after_first FROM audit_log WHERE action LIKE 'sec.%' ORDER BY id;

-- ------------------------------------------------ 2. retention in the future (item 4)
SET ROLE sec_admin;
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 day', false, '9000-01-01');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit_partition_maintenance(now() + interval '1 day');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 day', false, '9000-01-01');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS events_kept FROM audit_log WHERE action LIKE 'sec.%';

-- ------------------------------------------------ 3. read-only verification (item 5)
SELECT count(*) AS runs_before FROM audit_integrity_log \gset
BEGIN READ ONLY;
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();
COMMIT;
SELECT count(*) - :runs_before AS runs_recorded_read_only FROM audit_integrity_log;
SELECT checked FROM audit_verify_integrity();
SELECT count(*) - :runs_before AS runs_recorded_read_write FROM audit_integrity_log;

-- ------------------------------------------------ 4. PUBLIC gets nothing (item 6)
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'audit_db'
 WHERE has_function_privilege('sec_nobody', p.oid, 'EXECUTE')
 ORDER BY 1;
-- Anyone's DDL still passes the partition guards (they no longer need PUBLIC's EXECUTE).
SET ROLE sec_gdpr;
CREATE TABLE sec_plain (v text);
ALTER TABLE sec_plain ADD COLUMN w text;
DROP TABLE sec_plain;
RESET ROLE;

-- ------------------------------------------------ 5. publications by name (item 10)
SET client_min_messages = error;  -- (wal_level is not logical here: a WARNING per publication)
CREATE TABLE sec_app (id int PRIMARY KEY);
CREATE PUBLICATION sec_app_pub FOR TABLE sec_app;
SET ROLE sec_admin;
SELECT * FROM audit_archive_publish('sec_app_pub');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit_archive_publish('sec_archive');
SELECT * FROM audit_archive_publish('sec_archive');
RESET ROLE;
SELECT pubname, string_agg(tablename, ',' ORDER BY tablename) AS tables
  FROM pg_publication_tables WHERE pubname LIKE 'sec\_%' GROUP BY 1 ORDER BY 1;
DROP PUBLICATION sec_app_pub, sec_archive, sec_archive_mappings;
RESET client_min_messages;

-- ------------------------------------------------ 6. code on declared tables (item 1)
-- Temporary tables, views and foreign tables cannot be declared (42809).
SET ROLE sec_gdpr;
CREATE TEMP TABLE visits (patient text);
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('pg_temp.visits', 'patient', 'target');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.sec_visits (patient text);
CREATE VIEW public.sec_visits_view AS SELECT patient FROM public.sec_visits;
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('public.sec_visits_view', 'patient', 'target');
\echo :LAST_ERROR_SQLSTATE
-- A place needs SELECT, UPDATE and DELETE on its table, each of them (42501).
RESET ROLE;
CREATE TABLE public.sec_readonly (patient text);
GRANT SELECT ON public.sec_readonly TO sec_gdpr;
SET ROLE sec_gdpr;
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('public.sec_readonly', 'patient', 'target');
\echo :LAST_ERROR_SQLSTATE
-- A column of a user-defined type: exporting a row casts it to json with its owner's
-- code, which would run as the extension's owner (42809).
CREATE TYPE public.sec_mood AS ENUM ('ok');
CREATE TABLE public.sec_typed (patient text, mood public.sec_mood);
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('public.sec_typed', 'patient', 'target');
\echo :LAST_ERROR_SQLSTATE
-- A permanent table of its own, with a trigger that tries to become superuser and
-- records who it ran as: the subject functions change its rows as its owner, in a
-- restricted context: the trigger runs as sec_gdpr, not as a superuser.
CREATE TABLE public.sec_who (who name, super text);
CREATE FUNCTION public.sec_pwn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_who VALUES (current_user, current_setting('is_superuser'));
    IF TG_TABLE_NAME = 'sec_visits' AND NEW.patient LIKE 'pseudo-%' AND current_setting('is_superuser') = 'on' THEN
        EXECUTE 'ALTER ROLE sec_gdpr SUPERUSER';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sec_pwn BEFORE UPDATE ON public.sec_visits FOR EACH ROW EXECUTE FUNCTION public.sec_pwn();
INSERT INTO public.sec_visits VALUES ('zed@example.com'), ('amy@example.com');
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('public.sec_visits', 'patient', 'target');
SELECT table_name, action, rows FROM audit_pseudonymize_subject(ARRAY['zed@example.com'], 'hash') WHERE table_name = 'sec_visits';
SELECT who, super FROM public.sec_who;
SELECT count(*) FILTER (WHERE patient LIKE 'pseudo-%') AS pseudonymized, count(*) AS rows FROM public.sec_visits;
RESET ROLE;
-- The table later turned into something else is refused when it is used.
CREATE FOREIGN DATA WRAPPER sec_fdw;
CREATE SERVER sec_srv FOREIGN DATA WRAPPER sec_fdw;
CREATE FOREIGN TABLE public.sec_remote_child () INHERITS (public.sec_visits) SERVER sec_srv;
SET ROLE sec_gdpr;
SELECT count(*) FROM audit_subject_rows(ARRAY['amy@example.com']);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM audit_delete_subject(ARRAY['amy@example.com'], false);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP FOREIGN TABLE public.sec_remote_child;
DROP SERVER sec_srv;
DROP FOREIGN DATA WRAPPER sec_fdw;
SELECT * FROM sec_roles();

-- An admin's own partitioned table: moving its rows out of DEFAULT runs its triggers
-- as its owner, not as the extension's owner.
SET ROLE sec_admin;
CREATE TABLE public.sec_events ("timestamp" timestamptz NOT NULL, v text) PARTITION BY RANGE ("timestamp");
CREATE TABLE public.sec_events_default PARTITION OF public.sec_events DEFAULT;
CREATE TABLE public.sec_admin_who (who name, super text);
CREATE FUNCTION public.sec_admin_pwn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_admin_who VALUES (current_user, current_setting('is_superuser'));
    IF current_setting('is_superuser') = 'on' THEN
        EXECUTE 'ALTER ROLE sec_admin SUPERUSER';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER sec_admin_pwn BEFORE DELETE ON public.sec_events FOR EACH ROW EXECUTE FUNCTION public.sec_admin_pwn();
INSERT INTO public.sec_events VALUES ('2020-01-15', 'a');
SELECT * FROM audit_create_partitions('public.sec_events', 0, '2020-01-20');
SELECT who, super FROM public.sec_admin_who;
SELECT tableoid::regclass AS partition, v FROM public.sec_events;
RESET ROLE;
SELECT * FROM sec_roles();

-- Rules, row-level security policies and CHECK constraints of a declared table run
-- the same way: as its owner (sec_gdpr), never as the extension's owner; none of them
-- can read the key file (a row ': read the key file' would say so).
SET ROLE sec_gdpr;
CREATE TABLE public.sec_probe_log (kind text, who name, super text);
CREATE FUNCTION public.sec_probe(kind text, v text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_probe_log VALUES (kind, current_user, current_setting('is_superuser'));
    IF current_setting('is_superuser') = 'on' THEN EXECUTE 'ALTER ROLE sec_gdpr SUPERUSER'; END IF;
    BEGIN
        PERFORM pg_catalog.pg_read_file(pg_catalog.current_setting('audit_db.key_file'));
        INSERT INTO public.sec_probe_log VALUES (kind || ': read the key file', current_user, current_setting('is_superuser'));
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    RETURN true;
END $$;
CREATE TABLE public.sec_ruled (patient text CHECK (public.sec_probe('check', patient)));
INSERT INTO public.sec_ruled VALUES ('kim@example.com'), ('lee@example.com');
CREATE RULE sec_rule AS ON UPDATE TO public.sec_ruled DO ALSO SELECT public.sec_probe('rule', NEW.patient);
ALTER TABLE public.sec_ruled ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sec_ruled FORCE ROW LEVEL SECURITY;
CREATE POLICY sec_policy ON public.sec_ruled USING (public.sec_probe('policy', patient));
DELETE FROM public.sec_probe_log;
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('public.sec_ruled', 'patient', 'target');
-- (PostgreSQL refuses a DO ALSO rule on the statement that changes the rows: 0A000,
-- the table's owner's own choice; nothing ran.)
SELECT table_name, action, rows FROM audit_pseudonymize_subject(ARRAY['kim@example.com'], 'hash') WHERE table_name = 'sec_ruled';
\echo :LAST_ERROR_SQLSTATE
DROP RULE sec_rule ON public.sec_ruled;
SELECT table_name, action, rows FROM audit_pseudonymize_subject(ARRAY['kim@example.com'], 'hash') WHERE table_name = 'sec_ruled';
SELECT table_name, action, rows FROM audit_delete_subject(ARRAY['lee@example.com'], false) WHERE table_name = 'sec_ruled';
SELECT kind, who, super FROM public.sec_probe_log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
DELETE FROM audit_subject_map WHERE relation = 'public.sec_ruled'::regclass;
RESET ROLE;
SELECT * FROM sec_roles();

-- ------------------------------------------------ 6b. a writer's details cannot stop them
-- audit_log is append-only: a row whose details are not an object (an array, a
-- string, JSON null) must not make the subject functions fail for anyone, for good.
SET ROLE sec_writer;
INSERT INTO audit_log ("timestamp", principal_id, action, status, details)
VALUES (now(), 'ann@example.com', 'sec.odd', 'ok', '[1]'), (now(), 'ann@example.com', 'sec.odd', 'ok', '["email"]'),
       (now(), 'bob@example.com', 'sec.odd', 'ok', '"email"'), (now(), 'bob@example.com', 'sec.odd', 'ok', 'null');
RESET ROLE;
SET ROLE sec_gdpr;
SELECT count(*) AS ann_rows FROM audit_subject_rows(ARRAY['ann@example.com']) WHERE table_name = 'audit_log';
SELECT jsonb_array_length(audit_export_subject(ARRAY['carol@example.com'])) AS carol_rows;
SELECT rows AS pseudonymized FROM audit_pseudonymize_subject(ARRAY['ann@example.com'], 'hash')
 WHERE table_name = 'audit_log';
SELECT records_deleted FROM audit_delete_subject('bob@example.com', false);
RESET ROLE;
SELECT count(*) FILTER (WHERE principal_id LIKE 'pseudo-%') AS ann_pseudonymized,
       count(*) FILTER (WHERE principal_id = 'bob@example.com') AS bob_left
  FROM audit_log WHERE action = 'sec.odd';

-- ------------------------------------------------ 7. unsigned evidence (items 3, 8)
-- With a key configured, a row or a block without a signature is a mismatch, sealed
-- or not: the trigger never stores one, so it came from around it.
SELECT * FROM audit_seal(0) \gset
SELECT checked, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();
-- (A superuser with the triggers off: the documented threat of docs/integrity.md.)
SET session_replication_role = replica;
INSERT INTO audit_log (id, "timestamp", action, status, row_hash, seal_epoch)
SELECT max(id) + 1, now(), 'sec.forged', 'ok', repeat('0', 64), max(seal_epoch) + 1000 FROM audit_log;
RESET session_replication_role;
SELECT signature_mismatches, chain_breaks, first_bad_id = (SELECT id FROM audit_log WHERE action = 'sec.forged') AS names_it
  FROM audit_verify_integrity();
SELECT verification_status FROM audit_integrity_log ORDER BY id DESC LIMIT 1;
-- An unsigned block that chains correctly is a break all the same.
SET session_replication_role = replica;
DELETE FROM audit_log WHERE action = 'sec.forged';
UPDATE audit_seal_block SET signature = NULL WHERE epoch = (SELECT max(epoch) FROM audit_seal_block);
RESET session_replication_role;
SELECT signature_mismatches, chain_breaks FROM audit_verify_integrity();
-- A key that cannot be read refuses the insert (a new backend reads the file afresh);
-- nothing is stored unsigned.
SELECT current_setting('audit_db.key_file') AS keyfile \gset
SELECT count(*) AS rows_before FROM audit_log \gset
\set cmd 'chmod 644 ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
\c regress_security
\set VERBOSITY sqlstate
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'sec.during outage', 'ok');
\set VERBOSITY default
\set cmd 'chmod 600 ' :keyfile
COPY (SELECT 1 WHERE false) TO PROGRAM :'cmd';
\c regress_security
SELECT count(*) - :rows_before AS stored_during_outage FROM audit_log;
INSERT INTO audit_log ("timestamp", action, status) VALUES (now(), 'sec.after outage', 'ok');
SELECT count(*) AS signed_after FROM audit_log WHERE action = 'sec.after outage' AND signature IS NOT NULL;

-- ------------------------------------------------ 8. planted operators and functions (item 7)
-- A role with nothing but CREATE on the extension's schema plants operators that
-- PostgreSQL would choose over pg_catalog's (regclass = regclass and varchar = varchar
-- have no exact match there; bigint = bigint and bigint - integer do, so they are
-- planted too, for a caller whose search_path puts public first), and functions that
-- shadow built-ins. Every call records who ran it; run as a superuser, it would
-- make its planter superuser.
GRANT CREATE ON SCHEMA public TO sec_nobody;
CREATE TABLE public.sec_calls (who name, super text, query text);
GRANT INSERT ON public.sec_calls TO PUBLIC;
SET ROLE sec_nobody;
CREATE FUNCTION public.sec_evil() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_calls VALUES (current_user, current_setting('is_superuser'), current_query());
    IF current_setting('is_superuser') = 'on' THEN
        EXECUTE 'ALTER ROLE sec_nobody SUPERUSER';
    END IF;
    RETURN true;
END $$;
CREATE FUNCTION public.sec_eq_regclass(regclass, regclass) RETURNS boolean LANGUAGE sql
    AS $$ SELECT public.sec_evil() AND $1::oid OPERATOR(pg_catalog.=) $2::oid $$;
CREATE OPERATOR public.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = public.sec_eq_regclass);
CREATE FUNCTION public.sec_eq_varchar(varchar, varchar) RETURNS boolean LANGUAGE sql
    AS $$ SELECT public.sec_evil() AND $1::text OPERATOR(pg_catalog.=) $2::text $$;
CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.sec_eq_varchar);
CREATE FUNCTION public.sec_eq_int8(bigint, bigint) RETURNS boolean LANGUAGE sql
    AS $$ SELECT public.sec_evil() AND $1 OPERATOR(pg_catalog.=) $2 $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.sec_eq_int8);
CREATE FUNCTION public.sec_minus(bigint, integer) RETURNS bigint LANGUAGE sql
    AS $$ SELECT CASE WHEN public.sec_evil() THEN $1 OPERATOR(pg_catalog.-) $2 END $$;
CREATE OPERATOR public.- (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = public.sec_minus);
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT CASE WHEN public.sec_evil() THEN pg_catalog.now() END $$;
CREATE FUNCTION public.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN public.sec_evil() THEN 'object' END $$;
-- The plant works: the planter's own comparison calls it (as itself).
SELECT 'pg_class'::regclass = 'pg_class'::regclass AS planted;
RESET ROLE;
-- A superuser's job with a safe search_path of its own, then every role's functions.
SET search_path = pg_catalog;
-- (Each result is exact: what the same call gives, or the rows it must return.)
SELECT action, count(*) FROM public.audit_partition_maintenance() GROUP BY 1 ORDER BY 1;
SELECT checked, checked = (SELECT count(*) FROM public.audit_log) AS all_rows FROM public.audit_verify_integrity();
SELECT d ->> 'format' AS format, (d ->> 'blocks')::bigint = (SELECT count(*) FROM public.audit_seal_block) AS all_blocks
  FROM public.audit_integrity_digest() d;
SELECT count(*) AS drift FROM public.audit_verify_schema();
SELECT object_type, count(*) FROM public.audit_schema_snapshot() GROUP BY 1 ORDER BY 1;
SELECT status, blocks FROM public.audit_seal(0);
SELECT total_partitions, total_partitions = (SELECT count(*) FROM public.audit_partitions('public.audit_log')) AS all_partitions
  FROM public.audit_analyze_partitions();
SELECT count(*) AS stats_rows, count(*) = (SELECT count(*) FROM public.audit_partitions('public.audit_log')) AS all_partitions
  FROM public.get_audit_partition_stats();
SELECT pg_typeof(public.create_audit_log_partitions()) AS returns;
SELECT public.drop_old_audit_partitions(3650) AS dropped;
SELECT count(*) AS finished FROM public.audit_finish_restore();
SELECT count(*) AS applied FROM public.audit_apply_retention_policies();
RESET search_path;
SET ROLE sec_admin;
SELECT action, count(*) FROM audit_partition_maintenance() GROUP BY 1 ORDER BY 1;
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 8);
SELECT checked, checked = (SELECT count(*) FROM audit_log) AS all_rows FROM audit_verify_integrity();
RESET ROLE;
SET ROLE sec_gdpr;
SELECT audit_pseudonymize('carol@example.com', 'token') LIKE 'pseudo-%' AS ran;
SELECT audit_depseudonymize(audit_pseudonymize('carol@example.com', 'token')) AS ran;
SELECT count(*) AS subject_rows FROM audit_subject_rows(ARRAY['zed@example.com']);
SELECT jsonb_typeof(audit_export_subject(ARRAY['zed@example.com'])) AS ran;
SELECT count(*) AS pseudonymized FROM audit_pseudonymize_subject(ARRAY['zed@example.com'], 'hash');
SELECT count(*) AS deleted FROM audit_delete_subject(ARRAY['amy@example.com'], false);
SELECT count(*) AS forgotten FROM audit_forget_subject(ARRAY['carol@example.com']);
RESET ROLE;
-- A writer whose own search_path puts the planted operators first: the insert
-- trigger's lookups run as the extension's owner, with pg_catalog's operators.
SELECT pg_catalog.nextval('audit_log_id_seq') AS planted_gap \gset
SET ROLE sec_writer;
SET search_path = public, pg_catalog;
INSERT INTO audit_log ("timestamp", action, status) VALUES (pg_catalog.now(), 'sec.planted', 'ok');
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (:planted_gap, pg_catalog.now(), 'sec.planted explicit', 'ok');
RESET search_path;
RESET ROLE;
-- (This session's own statements, as a superuser, compare only where pg_catalog has
-- the exact operator: with public in its search_path it is as exposed as anyone's.)
SELECT count(*) FILTER (WHERE super = 'on') AS calls_as_superuser,
       count(*) FILTER (WHERE who = 'sec_nobody') AS planters_own_calls,
       count(*) FILTER (WHERE who <> 'sec_nobody' AND who <> 'sec_writer') AS calls_as_others
  FROM public.sec_calls;
SELECT who, left(query, 200) AS query FROM public.sec_calls WHERE super = 'on';
SELECT * FROM sec_roles();
DROP OPERATOR public.= (regclass, regclass), public.= (varchar, varchar), public.= (bigint, bigint), public.- (bigint, integer);
DROP FUNCTION public.sec_eq_regclass, public.sec_eq_varchar, public.sec_eq_int8, public.sec_minus,
              public.now(), public.jsonb_typeof(jsonb), public.sec_evil();
SELECT count(*) AS explicit_id_stored FROM audit_log WHERE action = 'sec.planted explicit';

-- ------------------------------------------------ 9. code run while a query is planned
-- An IMMUTABLE function with constant arguments is evaluated when a query is planned,
-- by whoever plans it: in an index or an extended statistics expression of a table,
-- it runs for anyone who queries that table. audit_db queries and indexes tables it
-- does not own only as their owner.
CREATE TABLE public.sec_plan_calls (who name, super text);
GRANT INSERT ON public.sec_plan_calls TO PUBLIC;
CREATE SCHEMA sec_own;
GRANT CREATE, USAGE ON SCHEMA sec_own TO sec_gdpr, sec_admin, sec_reader_role;
SET ROLE sec_gdpr;
CREATE FUNCTION sec_own.boom() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO public.sec_plan_calls VALUES (current_user, current_setting('is_superuser'));
    IF current_setting('is_superuser') = 'on' THEN
        EXECUTE 'ALTER ROLE sec_nobody SUPERUSER';
    END IF;
    RETURN 1;
END $$;
CREATE FUNCTION sec_own.evil() RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM sec_own.boom(); RETURN ''; END $$;
GRANT EXECUTE ON FUNCTION sec_own.boom(), sec_own.evil() TO PUBLIC;
-- A DPO's own table with a statistics expression, exported.
CREATE TABLE sec_own.customers (email text, note text);
INSERT INTO sec_own.customers VALUES ('carol@example.com', 'x');
CREATE STATISTICS sec_own.s1 ON (email || sec_own.evil()) FROM sec_own.customers;
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('sec_own.customers', 'email', 'actor');
SELECT count(*) AS carol_places FROM audit_subject_rows(ARRAY['carol@example.com']) WHERE table_name = 'sec_own.customers';
RESET ROLE;
-- A reader's analysis of its own parent whose DEFAULT partition has one.
SET ROLE sec_reader_role;
CREATE TABLE sec_own.r (ts timestamptz NOT NULL, v text) PARTITION BY RANGE (ts);
CREATE TABLE sec_own.r_default PARTITION OF sec_own.r DEFAULT;
CREATE STATISTICS sec_own.s2 ON (v || sec_own.evil()) FROM sec_own.r_default;
SELECT total_partitions FROM audit_analyze_partitions('sec_own.r');
RESET ROLE;
-- An admin's parent with an index expression: new partitions build it as the admin.
SET ROLE sec_admin;
CREATE TABLE sec_own.a (ts timestamptz NOT NULL, v text) PARTITION BY RANGE (ts);
CREATE INDEX ON sec_own.a ((v || sec_own.evil()));
SELECT count(*) AS created FROM audit_create_partitions('sec_own.a', 0, '2020-01-15');
RESET ROLE;
-- A DETACH (keep_table) runs the foreign-key checks of tables that reference the
-- parent, planned with their index expressions: as the parent's owner.
SET ROLE sec_admin;
CREATE TABLE sec_own.e (ts timestamptz NOT NULL, id int NOT NULL, PRIMARY KEY (ts, id)) PARTITION BY RANGE (ts);
SELECT count(*) AS created FROM audit_create_partitions('sec_own.e', 0, '2020-03-15');
CREATE TABLE sec_own.e_ref (ts timestamptz, id int, note text, FOREIGN KEY (ts, id) REFERENCES sec_own.e);
CREATE INDEX ON sec_own.e_ref ((note || sec_own.evil()));
SELECT * FROM audit_drop_expired_partitions('sec_own.e', '1 year', true);
RESET ROLE;
-- One parent's own trouble (a view of its owner's on an expired partition) does not
-- hold back audit_log's retention in the same maintenance run.
SELECT count(*) AS made FROM audit_create_partitions('audit_log', 0, '2020-01-15');
UPDATE audit_partition_config SET retention = '1 year', auto_drop = true WHERE parent = 'audit_log'::regclass;
SET ROLE sec_admin;
CREATE TABLE sec_own.v (ts timestamptz NOT NULL, x int) PARTITION BY RANGE (ts);
SELECT count(*) AS created FROM audit_create_partitions('sec_own.v', 0, '2020-01-15');
CREATE VIEW sec_own.v_hold AS SELECT * FROM sec_own.v_2020_01;
RESET ROLE;
INSERT INTO audit_partition_config (parent, retention, auto_drop) VALUES ('sec_own.v', '1 year', true);
SELECT action, partition FROM audit_partition_maintenance()
 WHERE action IN ('dropped', 'failed') ORDER BY action, partition;
SELECT to_regclass('audit_log_2020_01') IS NULL AS audit_log_old_month_dropped;
DELETE FROM audit_partition_config WHERE parent = 'sec_own.v'::regclass;
UPDATE audit_partition_config SET retention = NULL WHERE parent = 'audit_log'::regclass;
SELECT count(*) FILTER (WHERE super = 'on') AS calls_as_superuser, count(*) > 0 AS code_ran
  FROM public.sec_plan_calls;
SELECT * FROM sec_roles();
-- A schema publication of the extension's owner is not audit_db's (42710).
SET client_min_messages = error;
CREATE PUBLICATION sec_schema_pub FOR TABLES IN SCHEMA sec_own;
SET ROLE sec_admin;
SELECT * FROM audit_archive_publish('sec_schema_pub');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP PUBLICATION sec_schema_pub;
RESET client_min_messages;
-- An explicit id needs READ COMMITTED: a transaction snapshot would not show an id
-- committed since it was taken (0A000).
SET ROLE sec_writer;
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO audit_log (id, "timestamp", action, status) VALUES (1, now(), 'sec.rr', 'ok');
ROLLBACK;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- A publication of the DBA's on audit_log (a column list, a row filter) is not
-- audit_db's, although it names only audit_db's tables (42710).
SET client_min_messages = error;
CREATE PUBLICATION sec_dba_pub FOR TABLE audit_log (id, "timestamp", action) WHERE (status = 'ok')
    WITH (publish_via_partition_root = true);
SET ROLE sec_admin;
SELECT * FROM audit_archive_publish('sec_dba_pub');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP PUBLICATION sec_dba_pub;
RESET client_min_messages;
-- A declared table is read and changed as the DPO calling, not as its owner: the
-- owner's row-level security applies, and revoked rights are gone.
CREATE ROLE sec_owner;
GRANT CREATE, USAGE ON SCHEMA sec_own TO sec_owner;
SET ROLE sec_owner;
CREATE TABLE sec_own.crm (email text, tenant text);
INSERT INTO sec_own.crm VALUES ('eve@example.com', 'a'), ('eve@example.com', 'b');
ALTER TABLE sec_own.crm ENABLE ROW LEVEL SECURITY;
CREATE POLICY crm_a ON sec_own.crm TO sec_gdpr USING (tenant = 'a');
GRANT SELECT, UPDATE, DELETE ON sec_own.crm TO sec_gdpr;
RESET ROLE;
SET ROLE sec_gdpr;
INSERT INTO audit_subject_map (relation, column_name, role) VALUES ('sec_own.crm', 'email', 'actor');
SELECT row_data ->> 'tenant' AS tenant FROM audit_subject_rows(ARRAY['eve@example.com']) WHERE table_name = 'sec_own.crm';
RESET ROLE;
SET ROLE sec_owner;
REVOKE ALL ON sec_own.crm FROM sec_gdpr;
RESET ROLE;
SET ROLE sec_gdpr;
SELECT count(*) FROM audit_subject_rows(ARRAY['eve@example.com']);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM audit_subject_map WHERE relation = 'sec_own.crm'::regclass;
DELETE FROM audit_subject_map WHERE relation = 'sec_own.customers'::regclass;
SET client_min_messages = warning;
DROP SCHEMA sec_own CASCADE;
RESET client_min_messages;

-- ------------------------------------------------ 10. names taken and partitions pinned
-- Any role with CREATE on the schema can take a partition's name: the partition gets
-- the next free one, and the parent's other partitions are made (was 42P07 for
-- every missing period, every run).
SET timezone = 'UTC';
CREATE TABLE public.audit_log_2019_06 (x int);
SELECT * FROM audit_create_partitions('audit_log', 1, '2019-06-15');
SELECT partition::text, range_from FROM audit_partitions('audit_log')
 WHERE range_from >= '2019-06-01' AND range_from < '2019-08-01' ORDER BY range_from;
-- Anyone can make a view on a partition without any privilege on it: an expired
-- partition of the extension's tables goes all the same, and the view with it.
SET ROLE sec_nobody;
CREATE VIEW public.sec_pin AS SELECT 1 AS one FROM public.audit_log_2019_07 WHERE false;
RESET ROLE;
SET client_min_messages = warning;
SELECT * FROM audit_drop_expired_partitions('audit_log', '1 year', false, '2021-01-01');
RESET client_min_messages;
SELECT to_regclass('public.sec_pin') IS NULL AS view_went_with_it, to_regclass('public.audit_log_2019_07') IS NULL AS dropped;
DROP TABLE public.audit_log_2019_06;

-- ------------------------------------------------ 11. objects planted before the install
-- A role with CREATE on public plants, before CREATE EXTENSION, an overload that an
-- untyped call of the install script would pick, and an operator the 0.6.0 step's
-- anchor would; the original application's table it owns has an expression index
-- that reading it for adoption would fold. Each would run as the superuser installing.
\c postgres
CREATE DATABASE regress_security_install;
\c regress_security_install
SET client_min_messages = warning;
CREATE ROLE sec_planter;
GRANT CREATE ON SCHEMA public TO sec_planter;
SET ROLE sec_planter;
CREATE FUNCTION public.sec_boom() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('is_superuser') = 'on' THEN EXECUTE 'ALTER ROLE sec_planter SUPERUSER'; END IF;
    RETURN 1;
END $$;
CREATE FUNCTION public.audit_create_partitions(p text) RETURNS SETOF text LANGUAGE sql
    AS $$ SELECT NULL::text FROM (SELECT public.sec_boom()) b WHERE false $$;
CREATE FUNCTION public.sec_cat(text, bigint) RETURNS text LANGUAGE sql
    AS $$ SELECT $1 OPERATOR(pg_catalog.||) $2::text FROM (SELECT public.sec_boom()) b $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = public.sec_cat);
CREATE FUNCTION public.sec_imm(text) RETURNS text LANGUAGE plpgsql IMMUTABLE
    AS $$ BEGIN PERFORM public.sec_boom(); RETURN $1; END $$;
CREATE TABLE public.alerts (id varchar(255) NOT NULL);
CREATE INDEX ON public.alerts ((id OPERATOR(pg_catalog.||) public.sec_imm('x')));
RESET ROLE;
SET audit_db.adopt = 'drizzle';
CREATE EXTENSION audit_db;
RESET audit_db.adopt;
SELECT rolsuper AS planter_is_superuser FROM pg_roles WHERE rolname = 'sec_planter';
SELECT count(*) AS this_month_and_six_ahead FROM audit_partitions('audit_log') WHERE NOT is_default;
DROP EXTENSION audit_db;
CREATE EXTENSION audit_db VERSION '0.5.0';
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES (now(), 'org-1', 'sec.chained', 'ok');
ALTER EXTENSION audit_db UPDATE TO '0.6.0';
SELECT rolsuper AS planter_is_superuser FROM pg_roles WHERE rolname = 'sec_planter';
RESET client_min_messages;
\c postgres
DROP DATABASE regress_security_install;
DROP ROLE sec_planter;
-- ------------------------------------------------ 12. verification fails closed (item 3)
-- A sealed row edited to look pseudonymized (a token nobody issued, the marker) is a
-- hash mismatch; a forgotten subject's row still verifies (the reference kept for its
-- pseudonym), and an edit of it is a mismatch; a row written with the trigger off on
-- an install that adopted nothing is a mismatch, not legacy.
\c postgres
CREATE DATABASE regress_security_evidence;
\c regress_security_evidence
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
RESET client_min_messages;
SET timezone = 'UTC';
INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status, details)
SELECT '2026-01-05'::timestamptz + n * interval '1 hour', 'ev' || n || '@example.com', 'org-ev', 'ev.case', 'ok',
       jsonb_build_object('email', 'ev' || n || '@example.com', 'amount', n)
  FROM generate_series(1, 4) n;
SELECT id AS ev1 FROM audit_log WHERE principal_id = 'ev1@example.com' \gset
SELECT audit_pseudonymize_subject('ev2@example.com', 'token') AS kept,
       audit_pseudonymize_subject('ev3@example.com', 'token') AS forgotten;
SELECT audit_forget_subject('ev3@example.com') AS mappings_forgotten;
SELECT count(DISTINCT pseudonym_id) AS references_kept, count(*) = count(DISTINCT key_id) AS one_per_key, bool_and(reference ~ '^pseudo-[0-9a-f]{64}$') AS hash_pseudonyms,
       bool_and(reference <> 'ev3@example.com') AS no_original, bool_and(signature LIKE key_id || ':%') AS signed
  FROM pseudonym_forgotten;
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'clean' AS case, checked, hash_mismatches, signature_mismatches, chain_breaks, first_bad_id, legacy
  FROM audit_verify_integrity();
SELECT verification_status FROM audit_integrity_log ORDER BY id DESC LIMIT 1;
SET session_replication_role = replica;
UPDATE audit_log SET principal_id = 'pseudo-' || repeat('0', 32), status = 'failure', action = 'payment.approve',
       details = coalesce(details, '{}') || '{"pseudonymized": true, "amount": 999999}'
 WHERE id = :ev1;
RESET session_replication_role;
SELECT 'forged pseudonym' AS case, hash_mismatches, signature_mismatches, chain_breaks, first_bad_id = :ev1 AS first_is_it
  FROM audit_verify_integrity();
SELECT verification_status FROM audit_integrity_log ORDER BY id DESC LIMIT 1;
-- ... also with a kept reference planted for the invented token: the reference is the
-- right one (a hash pseudonym the log itself shows), but no key signed the row of it.
SELECT audit_pseudonymize('ev1@example.com', 'hash') AS ev1_reference \gset
INSERT INTO pseudonym_forgotten (pseudonym_id, key_id, reference, signature)
SELECT 'pseudo-' || repeat('0', 32), key_id, :'ev1_reference', key_id || ':' || repeat('ab', 32) FROM pseudonym_forgotten LIMIT 1;
SELECT 'forged pseudonym, planted reference' AS case, hash_mismatches, first_bad_id = :ev1 AS first_is_it
  FROM audit_verify_integrity();
SET session_replication_role = replica;
UPDATE audit_log SET status = 'failure' WHERE organization_id = 'org-ev' AND details->>'amount' = '3';
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-06', 'org-ev', 'ev.sneak', 'ok');
RESET session_replication_role;
SELECT 'forgotten row edited, row without trigger' AS case, checked, hash_mismatches, chain_breaks, legacy
  FROM audit_verify_integrity();

-- After the 0.5.0 -> 0.6.0 step the anchor records the horizon (highest id, rows) of
-- what existed without 0.6.0 evidence: a row past it without evidence is a mismatch,
-- one slipped in below it is one more than recorded (a chain break), and raising the
-- horizon breaks the anchor's hash, or, recomputed, the link the next block signed.
\c postgres
CREATE DATABASE regress_security_anchor;
\c regress_security_anchor
SET client_min_messages = warning;
CREATE EXTENSION audit_db VERSION '0.5.0';
INSERT INTO audit_log ("timestamp", organization_id, action, status)
SELECT '2026-01-05'::timestamptz + n * interval '1 hour', 'org-a', 'anchor.' || n, 'ok' FROM generate_series(1, 3) n;
ALTER EXTENSION audit_db UPDATE TO '0.6.0';
RESET client_min_messages;
SET timezone = 'UTC';
SELECT horizon_id, horizon_rows, jsonb_array_length(legacy_heads) AS heads FROM audit_seal_block WHERE epoch = 0;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-06', 'org-a', 'anchor.sealed', 'ok');
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'upgraded' AS case, checked, hash_mismatches, chain_breaks, legacy FROM audit_verify_integrity();
SET session_replication_role = replica;
INSERT INTO audit_log (id, "timestamp", organization_id, action, status) VALUES (1000, '2026-01-06', 'org-a', 'anchor.past', 'ok');
INSERT INTO audit_log (id, "timestamp", organization_id, action, status) VALUES (0, '2026-01-06', 'org-a', 'anchor.below', 'ok');
RESET session_replication_role;
SELECT 'rows without trigger' AS case, hash_mismatches, chain_breaks, first_bad_id, legacy FROM audit_verify_integrity();
SET session_replication_role = replica;
DELETE FROM audit_log WHERE id = 0;
UPDATE audit_seal_block SET horizon_id = 2000, horizon_rows = 4 WHERE epoch = 0;
RESET session_replication_role;
SELECT 'horizon raised' AS case, hash_mismatches, chain_breaks, legacy FROM audit_verify_integrity();
SET session_replication_role = replica;
UPDATE audit_seal_block SET block_hash = encode(sha256(convert_to(
           'audit_db.anchor.v2' || E'\n' || '"org-a"=' || (legacy_heads->0->>1) || ':' || (legacy_heads->0->>2) || E'\n' ||
           'horizon=2000:4' || E'\n', 'UTF8')), 'hex')
 WHERE epoch = 0;
RESET session_replication_role;
SELECT 'horizon raised, anchor rehashed' AS case, hash_mismatches, chain_breaks, legacy FROM audit_verify_integrity();
-- Nobody writes an anchor but the install or the upgrade (42501).
SELECT audit_seal_anchor();
\echo :LAST_ERROR_SQLSTATE

-- A row erased through audit_db leaves no room below the horizon: the erasure is
-- counted (audit_seal_retired, epoch 0), so a row slipped in with its id is one too
-- many, also for a run over a time range.
\c postgres
CREATE DATABASE regress_security_slot;
\c regress_security_slot
SET client_min_messages = warning;
CREATE EXTENSION audit_db VERSION '0.5.0';
INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status)
SELECT '2026-01-05'::timestamptz + n * interval '1 hour', 'p' || n || '@example.com', 'org-a', 'slot.' || n, 'ok'
  FROM generate_series(1, 3) n;
ALTER EXTENSION audit_db UPDATE TO '0.6.0';
RESET client_min_messages;
SET timezone = 'UTC';
SELECT records_deleted FROM audit_delete_subject('p1@example.com', false);
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT epoch, rows FROM audit_seal_retired WHERE epoch = 0;
SELECT 'erased' AS case, hash_mismatches, chain_breaks, legacy FROM audit_verify_integrity();
SET session_replication_role = replica;
INSERT INTO audit_log (id, "timestamp", principal_id, organization_id, action, status)
VALUES (1, '2026-01-05 01:00', 'mallory', 'org-a', 'payment.approve', 'ok');
RESET session_replication_role;
SELECT 'slipped in' AS case, hash_mismatches, chain_breaks, legacy FROM audit_verify_integrity();
SELECT 'slipped in, one day' AS case, hash_mismatches, chain_breaks FROM audit_verify_integrity('2026-01-05', '2026-01-06');

-- An anchor planted on an install that adopted nothing is unsigned: with a key
-- configured, a chain break, whatever the sealer chained onto it.
\c postgres
CREATE DATABASE regress_security_plant;
\c regress_security_plant
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
RESET client_min_messages;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-05', 'org-p', 'plant.sealed', 'ok');
INSERT INTO audit_seal_block (epoch, rows, sum, prev_hash, block_hash, signature, legacy_heads, horizon_id, horizon_rows)
VALUES (0, 0, repeat('0', 64), repeat('0', 64),
        encode(sha256(convert_to('audit_db.anchor.v2' || E'\n' || 'horizon=1000000:1000' || E'\n', 'UTF8')), 'hex'),
        NULL, NULL, 1000000, 1000);
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SET session_replication_role = replica;
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES ('2026-01-05', 'org-p', 'plant.sneak', 'ok');
RESET session_replication_role;
SELECT 'planted anchor' AS case, hash_mismatches, chain_breaks FROM audit_verify_integrity();

-- Second attack round. A token's mapping is whole or it does not resolve: an original
-- moved to another token's mapping row (its blind index is not that token's) leaves
-- both rows unresolved, so swapping the tokens of two sealed rows is reported. And
-- content added under a marker's name is hashed like any member.
\c postgres
CREATE DATABASE regress_security_mapping;
\c regress_security_mapping
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
RESET client_min_messages;
SET audit_db.personal_details_keys = 'email,name';
INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status, details) VALUES
    ('2026-01-02', 'alice', 'org', 'payment.approve', 'ok', '{"email": "alice@x", "amount": 5}'),
    ('2026-01-02', 'bob', 'org', 'login', 'ok', '{"email": "bob@x"}'),
    ('2026-01-02', 'carol', 'org', 'note', 'ok', NULL);
SELECT audit_pseudonymize_subject('alice', 'token') AS alice, audit_pseudonymize_subject('bob', 'token') AS bob;
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'tokens' AS case, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();
BEGIN;
SET LOCAL session_replication_role = replica;
WITH a AS (SELECT pseudonym_id p, original_id o FROM pseudonym_mapping
            WHERE pseudonym_id = (SELECT principal_id FROM audit_log WHERE action = 'payment.approve')),
     b AS (SELECT pseudonym_id p, original_id o FROM pseudonym_mapping
            WHERE pseudonym_id = (SELECT principal_id FROM audit_log WHERE action = 'login'))
UPDATE pseudonym_mapping m SET original_id = CASE WHEN m.pseudonym_id = a.p THEN b.o ELSE a.o END
  FROM a, b WHERE m.pseudonym_id IN (a.p, b.p);
WITH a AS (SELECT principal_id p FROM audit_log WHERE action = 'payment.approve'),
     b AS (SELECT principal_id p FROM audit_log WHERE action = 'login')
UPDATE audit_log l SET principal_id = CASE WHEN l.action = 'payment.approve' THEN b.p ELSE a.p END
  FROM a, b WHERE l.action IN ('payment.approve', 'login');
COMMIT;
SELECT 'originals swapped between mappings' AS case, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE audit_log SET details = '{"pseudonymized": {"approved_by": "ceo", "amount": 1000000}, "pseudonymizedAt": "forged"}'
 WHERE action = 'note';
COMMIT;
SELECT 'content under the markers'' names' AS case, hash_mismatches FROM audit_verify_integrity();

-- No false report where a row holds a pseudonym a writer wrote itself next to one
-- pseudonymization put there (a logged depseudonymization names its pseudonym as the
-- target), nor where a writer's own value sits under a marker's name (it stays).
\c postgres
CREATE DATABASE regress_security_mixed;
\c regress_security_mixed
SET client_min_messages = warning;
CREATE EXTENSION audit_db;
RESET client_min_messages;
SET audit_db.personal_details_keys = 'email';
SELECT audit_pseudonymize('bob', 'token') AS tb \gset
INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status, target_resource_id, details) VALUES
    ('2026-01-02', 'alice', 'org', 'view', 'ok', :'tb', '{"email": "alice@x"}'),
    ('2026-01-02', 'dan', 'org', 'view', 'ok', NULL, '{"email": "dan@x", "pseudonymized": "no", "pseudonymizedAt": "never"}');
SELECT audit_pseudonymize_subject('alice', 'encryption') AS alice, audit_pseudonymize_subject('dan', 'hash') AS dan;
SELECT audit_depseudonymize(:'tb') AS bob;
SELECT audit_pseudonymize_subject(session_user::text, 'token') > 0 AS dpo;
SELECT details->'pseudonymized' AS kept, details->'pseudonymizedAt' AS kept_at, details->>'email' LIKE 'pseudo-%' AS email_pseudonymized
  FROM audit_log WHERE action = 'view' AND details ? 'pseudonymizedAt' AND details->>'pseudonymizedAt' = 'never';
SELECT blocks > 0 AS sealed FROM audit_seal(0);
SELECT 'written and put pseudonyms' AS case, hash_mismatches, signature_mismatches, chain_breaks FROM audit_verify_integrity();

\c postgres
DROP DATABASE regress_security_mapping;
DROP DATABASE regress_security_mixed;
DROP DATABASE regress_security_evidence;
DROP DATABASE regress_security_anchor;
DROP DATABASE regress_security_slot;
DROP DATABASE regress_security_plant;
\c postgres
DROP DATABASE regress_security;
DROP ROLE sec_writer, sec_admin, sec_gdpr, sec_nobody, sec_reader_role, sec_owner;
