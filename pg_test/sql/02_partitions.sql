-- Partitions made at install time, inserts routed to them, idempotency, and
-- explicit reference times (month boundary, leap year, non-UTC TimeZone).
SET timezone = 'America/New_York';

-- The install created the current UTC month and 6 ahead, plus DEFAULT, on both tables.
SELECT parent,
       array_agg(p.partition::text ORDER BY p.range_from) FILTER (WHERE NOT p.is_default)
         = (SELECT array_agg(parent || '_' || to_char(m, 'YYYY_MM') ORDER BY m)
              FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                   date_trunc('month', now() AT TIME ZONE 'UTC') + interval '6 months',
                                   interval '1 month') m) AS seven_months,
       count(*) FILTER (WHERE p.is_default) AS defaults,
       bool_and(p.range_from AT TIME ZONE 'UTC' = date_trunc('month', p.range_from AT TIME ZONE 'UTC'))
         FILTER (WHERE NOT p.is_default) AS utc_month_starts
  FROM unnest(ARRAY['audit_log', 'error_log']) parent,
       LATERAL audit_partitions(parent::regclass) p
 GROUP BY parent ORDER BY parent;

-- Idempotent: a second call creates nothing.
SELECT count(*) AS created FROM audit_create_partitions();
SELECT count(*) AS created FROM audit_create_partitions('error_log');

-- One event in each created month, one far in the past, one far in the future.
INSERT INTO audit_log ("timestamp", action, status)
SELECT m + interval '3 days', 'test.month', 'success'
  FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                       date_trunc('month', now() AT TIME ZONE 'UTC') + interval '6 months',
                       interval '1 month') m;
INSERT INTO audit_log ("timestamp", action, status) VALUES
    ('1970-01-01 00:00:00+00', 'test.past', 'success'),
    ('2999-12-31 23:59:59+00', 'test.future', 'success');
SELECT action,
       count(*) AS events,
       bool_and(tableoid::regclass::text = 'audit_log_' || to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY_MM'))
         AS in_own_month,
       bool_and(tableoid::regclass::text = 'audit_log_default') AS in_default
  FROM audit_log GROUP BY action ORDER BY action;

-- Explicit reference time in a non-UTC session: 2024-01-31 23:30 New York is
-- 2024-02-01 04:30 UTC, so February 2024 (29 days, leap year) is the current month.
SELECT * FROM audit_create_partitions('audit_log', 2, '2024-01-31 23:30:00');
SELECT partition, range_from, range_to
  FROM audit_partitions() WHERE partition::text LIKE 'audit_log_2024%' ORDER BY range_from;
SET timezone = 'UTC';
SELECT partition, range_from, range_to, range_to - range_from AS width
  FROM audit_partitions() WHERE partition::text LIKE 'audit_log_2024%' ORDER BY range_from;
SELECT count(*) AS created FROM audit_create_partitions('audit_log', 2, '2024-03-31 23:59:59+00');

-- Rows already in DEFAULT for a new range move into the new partition.
INSERT INTO audit_log ("timestamp", action, status)
SELECT '2021-06-01 00:00:00+00'::timestamptz + i * interval '7 hours', 'test.backfill', 'success'
  FROM generate_series(0, 99) i;  -- 2021-06-01 .. 2021-06-29
SELECT count(*) AS in_default FROM ONLY audit_log_default WHERE action = 'test.backfill';
SELECT * FROM audit_create_partitions('audit_log', 0, '2021-06-15');
SELECT tableoid::regclass AS partition, count(*) FROM audit_log
 WHERE action = 'test.backfill' GROUP BY 1;
SELECT count(*) AS total_events, count(DISTINCT id) AS distinct_ids FROM audit_log;

-- The new partition has every index of the parent.
SELECT (SELECT count(*) FROM pg_index WHERE indrelid = 'audit_log'::regclass) AS parent_indexes,
       (SELECT count(*) FROM pg_index WHERE indrelid = 'audit_log_2021_06'::regclass) AS partition_indexes,
       (SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid
         WHERE x.indrelid = 'audit_log_2021_06'::regclass) AS attached_to_parent_index;

-- error_log works the same way.
SELECT * FROM audit_create_partitions('error_log', 1, '2025-12-31 12:00:00+00');

-- Partitions are ordinary tables, not extension members.
SELECT count(*) AS member_partitions
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
   AND c.relname ~ '^(audit|error)_log_[0-9]';
