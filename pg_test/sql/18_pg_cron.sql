-- A real pg_cron job (pg_test/run.sh runs this file only where pg_cron is installed,
-- and says so when it is not): two more months ahead for error_log (premake 8), done by the
-- scheduler. The month is named once, before the job: the job may run in the next
-- month (it makes that one's eighth month then, and this one's too).
UPDATE audit_partition_config SET premake = 8, auto_drop = false WHERE parent = 'error_log'::regclass;
SELECT 'error_log_' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '8 months', 'YYYY_MM')
       AS eighth_month \gset
SELECT to_regclass(:'eighth_month') IS NULL AS eighth_month_missing,
       (SELECT last_run_at IS NULL FROM audit_partition_config WHERE parent = 'error_log'::regclass) AS never_ran;
CREATE EXTENSION pg_cron;
SELECT cron.schedule('audit-maint', '* * * * *', 'SELECT audit_partition_maintenance()') AS jobid;
-- pg_cron 1.4 schedules by the minute: poll (bounded at 75 s) until the job has run once.
DO $$
BEGIN
    FOR i IN 1..750 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM cron.job_run_details WHERE status IN ('succeeded', 'failed'));
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT cron.unschedule('audit-maint');
SELECT status FROM cron.job_run_details ORDER BY runid LIMIT 1;
SELECT to_regclass(:'eighth_month') IS NOT NULL AS eighth_month_created,
       (SELECT last_run_at IS NOT NULL FROM audit_partition_config WHERE parent = 'error_log'::regclass) AS recorded;
DROP EXTENSION pg_cron;
UPDATE audit_partition_config SET premake = 6, auto_drop = true WHERE parent = 'error_log'::regclass;
