-- audit_convert_to_partitioned(): 100k-row plain tables in both modes, and failures
-- that leave the original untouched.
SET timezone = 'UTC';
\set VERBOSITY default

CREATE FUNCTION make_plain(t text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TABLE %I (id serial PRIMARY KEY, "timestamp" timestamptz, action varchar(255) NOT NULL,
                                     status varchar(50) NOT NULL, details jsonb)', t);
    EXECUTE format('CREATE INDEX %I ON %I ("timestamp")', t || '_timestamp_idx', t);
    EXECUTE format('CREATE INDEX %I ON %I (action, status)', t || '_action_status_idx', t);
    EXECUTE format('COMMENT ON TABLE %I IS %L', t, 'legacy audit table');
    EXECUTE format('GRANT SELECT ON %I TO audit_db_reader', t);
    EXECUTE format('GRANT INSERT ON %I TO audit_db_writer', t);
    -- 100,000 events every 5 minutes from 2024-01-01: they end on 2024-12-12.
    EXECUTE format($i$INSERT INTO %I ("timestamp", action, status)
                     SELECT '2024-01-01'::timestamptz + i * interval '5 minutes', 'a' || (i %% 7), 'ok'
                       FROM generate_series(0, 99999) i$i$, t);
END $$;

-- ---------------------------------------------------------------- attach mode
SELECT make_plain('conv_a');
SELECT count(*) AS rows, sum(id) AS id_sum, max(id) AS max_id FROM conv_a;
-- The legacy partition reaches up to the start of the current month (no gap for
-- DEFAULT to catch); the current month and 6 ahead are new partitions.
SELECT replace(audit_convert_to_partitioned('conv_a', 'attach'),
               to_char(date_trunc('month', now() AT TIME ZONE 'UTC'), 'YYYY-MM-DD'), 'THIS-MONTH');
SELECT relkind FROM pg_class WHERE oid = 'conv_a'::regclass;
SELECT count(*) AS rows, sum(id) AS id_sum, max(id) AS max_id FROM conv_a;
SELECT partition, range_from,
       range_to = date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS to_this_month, is_default
  FROM audit_partitions('conv_a')
 WHERE range_from < '2025-06-01' OR is_default;
-- Indexes of the parent: the originals by name, the widened primary key.
SELECT indexrelid::regclass AS index, regexp_replace(pg_get_indexdef(indexrelid), '^.* USING ', 'USING ') AS def
  FROM pg_index WHERE indrelid = 'conv_a'::regclass ORDER BY indexrelid::regclass::text;
-- The legacy partition reuses its old indexes (attached, not rebuilt) and got the new key.
SELECT count(*) AS legacy_indexes,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = x.indexrelid)) AS attached
  FROM pg_index x WHERE indrelid = 'conv_a_legacy'::regclass;
SELECT has_table_privilege('audit_db_reader', 'conv_a', 'SELECT') AS reader_select,
       has_table_privilege('audit_db_writer', 'conv_a', 'INSERT') AS writer_insert,
       obj_description('conv_a'::regclass, 'pg_class') AS comment,
       (SELECT pg_get_serial_sequence('conv_a', 'id')) AS sequence;
-- The sequence goes on where it was; new rows land in the new partitions.
INSERT INTO conv_a ("timestamp", action, status) VALUES (now(), 'after', 'ok') RETURNING id,
       tableoid::regclass::text = 'conv_a_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM') AS in_current_month;
SELECT parent, "interval", premake FROM audit_partition_config WHERE parent = 'conv_a'::regclass;

-- ------------------------------------------------------------------ copy mode
SELECT make_plain('conv_c');
SELECT regexp_replace(audit_convert_to_partitioned('conv_c', 'copy'), 'into \d+ monthly', 'into N monthly');
SELECT count(*) AS rows, sum(id) AS id_sum, max(id) AS max_id FROM conv_c;
SELECT to_regclass('conv_c_old') AS old_table_left;
SELECT partition, count(*) AS rows FROM (SELECT tableoid::regclass AS partition FROM conv_c) s
 GROUP BY 1 ORDER BY partition::text LIMIT 13;
SELECT count(*) AS partition_indexes FROM pg_index WHERE indrelid = 'conv_c_2024_06'::regclass;
INSERT INTO conv_c ("timestamp", action, status) VALUES ('2024-06-30 23:59:59', 'after', 'ok') RETURNING id, tableoid::regclass;

-- ------------------------------------- failures leave the original untouched
SELECT make_plain('conv_f');
-- A row without a timestamp cannot be placed: refused before anything changes.
INSERT INTO conv_f ("timestamp", action, status) VALUES (NULL, 'no time', 'ok');
SELECT audit_convert_to_partitioned('conv_f', 'copy');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM conv_f WHERE "timestamp" IS NULL;
-- A poisoned row in May: its CHECK (NOT VALID on the old table) is enforced on the
-- new partitions, so copy mode fails in the middle, after January to April were copied.
INSERT INTO conv_f ("timestamp", action, status) VALUES ('2024-05-05', 'poison', 'ok');
ALTER TABLE conv_f ADD CONSTRAINT no_poison CHECK (action <> 'poison') NOT VALID;
SELECT audit_convert_to_partitioned('conv_f', 'copy');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_convert_to_partitioned('conv_f', 'attach');
\echo :LAST_ERROR_SQLSTATE
-- Untouched: still a plain table with its rows, indexes and name; nothing left behind.
SELECT c.relkind, (SELECT count(*) FROM conv_f) AS rows,
       (SELECT array_agg(indexrelid::regclass::text ORDER BY 1) FROM pg_index WHERE indrelid = c.oid) AS indexes,
       to_regclass('conv_f_old') AS old, to_regclass('conv_f_legacy') AS legacy,
       to_regclass('conv_f_default') AS default_partition
  FROM pg_class c WHERE c.oid = 'conv_f'::regclass;

-- ------------------------------------------------------------------ bad input
SELECT audit_convert_to_partitioned(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT audit_convert_to_partitioned('conv_f', 'merge');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_convert_to_partitioned('audit_log');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_convert_to_partitioned('audit_log_default');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_convert_to_partitioned('conv_f', 'attach', 'created');
\echo :LAST_ERROR_SQLSTATE
SELECT audit_convert_to_partitioned('conv_f', 'attach', 'action');
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW conv_f_recent AS SELECT * FROM conv_f WHERE "timestamp" > '2024-12-01';
SELECT audit_convert_to_partitioned('conv_f');
\echo :LAST_ERROR_SQLSTATE
DROP VIEW conv_f_recent;
CREATE ROLE regress_not_owner;
GRANT EXECUTE ON FUNCTION audit_convert_to_partitioned(regclass, text, text) TO regress_not_owner;
SET ROLE regress_not_owner;
SELECT audit_convert_to_partitioned('conv_f');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE EXECUTE ON FUNCTION audit_convert_to_partitioned(regclass, text, text) FROM regress_not_owner;
DROP ROLE regress_not_owner;

DELETE FROM audit_partition_config WHERE parent IN ('conv_a'::regclass, 'conv_c'::regclass);
DROP TABLE conv_a, conv_c, conv_f;
DROP FUNCTION make_plain(text);
