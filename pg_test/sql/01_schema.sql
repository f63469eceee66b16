-- Fresh install: exactly the spec's 14 tables, with the columns, types,
-- nullability, defaults, indexes and constraints of schema-reference.md.
-- The expected file is the reviewed snapshot of that reference.
SELECT extversion FROM pg_extension WHERE extname = 'audit_db';

-- Tables that belong to the extension (the two DEFAULT partitions included).
SELECT c.relname, c.relkind, c.relispartition
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_db')
   AND c.relkind IN ('r', 'p')
 ORDER BY c.relname;

-- Columns of the 14 spec tables: name, type, NOT NULL, default.
SELECT c.relname AS table, a.attname AS column,
       format_type(a.atttypid, a.atttypmod) AS type,
       CASE WHEN a.attnotnull THEN 'NN' ELSE '' END AS nn,
       pg_get_expr(ad.adbin, ad.adrelid) AS "default"
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
 ORDER BY c.relname, a.attnum;

-- Indexes of the spec tables (partitioned indexes on the two parents).
SELECT c.relname AS table, i.relname AS index,
       regexp_replace(pg_get_indexdef(x.indexrelid), '^.* USING ', 'USING ') AS def
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class c ON c.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
 WHERE NOT c.relispartition
 ORDER BY c.relname, i.relname;

-- Primary keys, unique constraints and foreign keys.
SELECT conrelid::regclass AS table, conname, pg_get_constraintdef(oid) AS def
  FROM pg_constraint
 WHERE contype IN ('p', 'u', 'f')
   AND connamespace = 'public'::regnamespace
   AND conrelid IN (SELECT oid FROM pg_class WHERE NOT relispartition)
 ORDER BY conrelid::regclass::text, conname;

-- Partitioning of the two time-series tables.
SELECT partrelid::regclass, partstrat, pg_get_partkeydef(partrelid)
  FROM pg_partitioned_table ORDER BY partrelid::regclass::text;

-- No audit_integrity_log -> audit_log foreign key (dropped by migration 0004).
SELECT count(*) AS fk_to_audit_log FROM pg_constraint
 WHERE contype = 'f' AND confrelid = 'audit_log'::regclass;

-- Seeds: none (retention policies and presets are data, not schema).
SELECT (SELECT count(*) FROM audit_retention_policy) AS policies,
       (SELECT count(*) FROM audit_preset) AS presets;

-- Roles exist.
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'audit\_db\_%' ORDER BY 1;

-- Every function of the extension is documented.
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS documented
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'audit_db')
 ORDER BY 1, 2;
