-- audit_db schema: the tables of the original Drizzle migrations 0000-0006
-- (see ../shared/spec/schema-reference.md), created by CREATE EXTENSION.
--
-- Deliberate difference from the original: migration 0000 declares single-column
-- primary keys on audit_log(id) and error_log(id), but both tables are
-- PARTITION BY RANGE ("timestamp") and PostgreSQL requires every unique
-- constraint of a partitioned table to include the partition key. audit_db
-- therefore uses PRIMARY KEY (id, "timestamp") on those two tables (constraint
-- names audit_log_pkey / error_log_pkey). Migration 0004 dropped the foreign key
-- audit_integrity_log.audit_log_id -> audit_log.id for the same reason; it is
-- not created here.
--
-- Two more, for volume: audit_log.id is bigint (bigserial; the original's serial runs
-- out after 2^31 events, five days at 5,000 events/s) and so is
-- audit_integrity_log.audit_log_id, which records such ids. Migration 0005's run_id
-- columns (scheduled_reports, report_executions) are here since 0.6.0.

-- The migration journal times each script from here (execution_ms).
SELECT pg_catalog.set_config('audit_db.script_started', pg_catalog.clock_timestamp()::text, true);

-- ---------------------------------------------------------- adoption, step 1
-- SET audit_db.adopt = 'drizzle' before CREATE EXTENSION takes over the tables that
-- the original Drizzle migrations created in this schema: each one found is renamed
-- <table>__drizzle (with its indexes and sequences, whose names the new tables
-- need); finalize.sql copies the rows into the extension's tables, checks the
-- counts, imports drizzle.__drizzle_migrations into the journal and drops the old
-- tables. All inside CREATE EXTENSION's transaction: any error and nothing changes.
DO $adopt$
DECLARE
    t text;
    idx record;
    saved_path text := pg_catalog.current_setting('search_path');
BEGIN
    IF coalesce(pg_catalog.current_setting('audit_db.adopt', true), '') = '' THEN
        RETURN;
    END IF;
    IF pg_catalog.current_setting('audit_db.adopt', true) <> 'drizzle' THEN
        RAISE EXCEPTION 'unknown audit_db.adopt value "%"', pg_catalog.current_setting('audit_db.adopt', true)
              USING ERRCODE = 'invalid_parameter_value', HINT = 'The only source that can be adopted is ''drizzle''.';
    END IF;
    -- Names and operators resolve in pg_catalog only in this block (the extension's
    -- schema may hold objects a non-superuser planted); the script's own path after.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- The tables' owners' index and statistics expressions would run as this superuser
    -- when adoption reads the rows (IMMUTABLE functions are folded while a query is
    -- planned): expression and partial indexes and extended statistics of the old
    -- tables and their partitions go first. The old tables are dropped at the end of
    -- the adoption anyway, and audit_db's own tables bring their own indexes.
    FOR idx IN
        WITH RECURSIVE tree(oid) AS (
            SELECT c.oid FROM pg_catalog.pg_class c
             WHERE c.relnamespace OPERATOR(pg_catalog.=) '@extschema@'::pg_catalog.regnamespace
               AND c.relname OPERATOR(pg_catalog.=) ANY (ARRAY['audit_log', 'error_log', 'audit_integrity_log', 'audit_retention_policy',
                             'error_aggregation', 'alerts', 'scheduled_reports', 'report_executions',
                             'report_templates', 'audit_preset', 'archive_storage', 'archive_dlq_event',
                             'config_change_event', 'pseudonym_mapping']::pg_catalog.name[])
            UNION SELECT h.inhrelid FROM pg_catalog.pg_inherits h JOIN tree ON h.inhparent OPERATOR(pg_catalog.=) tree.oid)
        SELECT pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', x.indrelid::pg_catalog.regclass, k.conname) AS ddl
          FROM pg_catalog.pg_index x JOIN tree ON x.indrelid OPERATOR(pg_catalog.=) tree.oid
          JOIN pg_catalog.pg_constraint k ON k.conindid OPERATOR(pg_catalog.=) x.indexrelid
         WHERE x.indexprs IS NOT NULL OR x.indpred IS NOT NULL
        UNION ALL
        SELECT pg_catalog.format('DROP INDEX %s', x.indexrelid::pg_catalog.regclass)
          FROM pg_catalog.pg_index x JOIN tree ON x.indrelid OPERATOR(pg_catalog.=) tree.oid
         WHERE (x.indexprs IS NOT NULL OR x.indpred IS NOT NULL)
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conindid OPERATOR(pg_catalog.=) x.indexrelid)
        UNION ALL
        SELECT pg_catalog.format('DROP STATISTICS %I.%I', n.nspname, s.stxname)
          FROM pg_catalog.pg_statistic_ext s JOIN tree ON s.stxrelid OPERATOR(pg_catalog.=) tree.oid
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) s.stxnamespace
    LOOP
        EXECUTE idx.ddl;
    END LOOP;
    FOREACH t IN ARRAY ARRAY['audit_log', 'error_log', 'audit_integrity_log', 'audit_retention_policy',
                             'error_aggregation', 'alerts', 'scheduled_reports', 'report_executions',
                             'report_templates', 'audit_preset', 'archive_storage', 'archive_dlq_event',
                             'config_change_event', 'pseudonym_mapping']
    LOOP
        CONTINUE WHEN pg_catalog.to_regclass('@extschema@.' || pg_catalog.quote_ident(t)) IS NULL;
        -- Indexes, sequences and (if it was partitioned by hand) partitions take the
        -- names the new objects need: they move aside too.
        FOR idx IN
            SELECT i.relname FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
             WHERE x.indrelid = ('@extschema@.' || pg_catalog.quote_ident(t))::regclass
            UNION ALL
            SELECT c.relname FROM pg_catalog.pg_inherits h JOIN pg_catalog.pg_class c ON c.oid = h.inhrelid
             WHERE h.inhparent = ('@extschema@.' || pg_catalog.quote_ident(t))::regclass
            UNION ALL
            SELECT s.relname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid
             WHERE d.classid = 'pg_catalog.pg_class'::regclass AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
               AND d.refobjid = ('@extschema@.' || pg_catalog.quote_ident(t))::regclass
        LOOP
            EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I RENAME TO %I', idx.relname,
                                      pg_catalog.left(idx.relname, 54) || '__drizzle');
        END LOOP;
        EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I RENAME TO %I', t, t || '__drizzle');
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', saved_path, true);
END
$adopt$;

-- ---------------------------------------------------------------- audit_log
CREATE TABLE audit_log (
    id bigserial NOT NULL,
    "timestamp" timestamp with time zone NOT NULL,
    ttl varchar(255),
    principal_id varchar(255),
    organization_id varchar(255),
    action varchar(255) NOT NULL,
    target_resource_type varchar(255),
    target_resource_id varchar(255),
    status varchar(50) NOT NULL,
    outcome_description text,
    hash varchar(64),
    hash_algorithm varchar(50) DEFAULT 'SHA-256',
    event_version varchar(20) DEFAULT '1.0',
    correlation_id varchar(255),
    data_classification varchar(20) DEFAULT 'INTERNAL',
    retention_policy varchar(50) DEFAULT 'standard',
    processing_latency integer,
    archived_at timestamp with time zone,
    details jsonb,
    CONSTRAINT audit_log_pkey PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");

CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;

CREATE INDEX audit_log_timestamp_idx ON audit_log USING btree ("timestamp");
CREATE INDEX audit_log_principal_id_idx ON audit_log USING btree (principal_id);
CREATE INDEX audit_log_organization_id_idx ON audit_log USING btree (organization_id);
CREATE INDEX audit_log_action_idx ON audit_log USING btree (action);
CREATE INDEX audit_log_status_idx ON audit_log USING btree (status);
CREATE INDEX audit_log_hash_idx ON audit_log USING btree (hash);
CREATE INDEX audit_log_target_resource_type_idx ON audit_log USING btree (target_resource_type);
CREATE INDEX audit_log_target_resource_id_idx ON audit_log USING btree (target_resource_id);
CREATE INDEX audit_log_correlation_id_idx ON audit_log USING btree (correlation_id);
CREATE INDEX audit_log_data_classification_idx ON audit_log USING btree (data_classification);
CREATE INDEX audit_log_retention_policy_idx ON audit_log USING btree (retention_policy);
CREATE INDEX audit_log_archived_at_idx ON audit_log USING btree (archived_at);
CREATE INDEX audit_log_timestamp_status_idx ON audit_log USING btree ("timestamp", status);
CREATE INDEX audit_log_principal_action_idx ON audit_log USING btree (principal_id, action);
CREATE INDEX audit_log_classification_retention_idx ON audit_log USING btree (data_classification, retention_policy);
CREATE INDEX audit_log_resource_type_id_idx ON audit_log USING btree (target_resource_type, target_resource_id);

-- ---------------------------------------------------------------- error_log
CREATE TABLE error_log (
    id varchar(36) NOT NULL,
    category varchar(50) NOT NULL,
    severity varchar(20) NOT NULL,
    code varchar(20) NOT NULL,
    message text NOT NULL,
    component varchar(100) NOT NULL,
    operation varchar(100) NOT NULL,
    correlation_id varchar(255) NOT NULL,
    user_id varchar(255),
    session_id varchar(255),
    request_id varchar(255),
    retryable varchar(10) NOT NULL,
    aggregation_key varchar(255) NOT NULL,
    context jsonb,
    troubleshooting jsonb,
    "timestamp" timestamp with time zone NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT error_log_pkey PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");

CREATE TABLE error_log_default PARTITION OF error_log DEFAULT;

CREATE INDEX error_log_timestamp_idx ON error_log USING btree ("timestamp");
CREATE INDEX error_log_category_idx ON error_log USING btree (category);
CREATE INDEX error_log_severity_idx ON error_log USING btree (severity);
CREATE INDEX error_log_component_idx ON error_log USING btree (component);
CREATE INDEX error_log_correlation_id_idx ON error_log USING btree (correlation_id);
CREATE INDEX error_log_aggregation_key_idx ON error_log USING btree (aggregation_key);
CREATE INDEX error_log_user_id_idx ON error_log USING btree (user_id);
CREATE INDEX error_log_created_at_idx ON error_log USING btree (created_at);
CREATE INDEX error_log_category_severity_idx ON error_log USING btree (category, severity);
CREATE INDEX error_log_component_timestamp_idx ON error_log USING btree (component, "timestamp");

-- ------------------------------------------------------ audit_integrity_log
CREATE TABLE audit_integrity_log (
    id serial PRIMARY KEY,
    audit_log_id bigint NOT NULL,
    verification_timestamp timestamp with time zone NOT NULL DEFAULT now(),
    verification_status varchar(20) NOT NULL,
    verification_details jsonb,
    verified_by varchar(255),
    hash_verified varchar(64),
    expected_hash varchar(64)
);
CREATE INDEX audit_integrity_log_audit_log_id_idx ON audit_integrity_log USING btree (audit_log_id);
CREATE INDEX audit_integrity_log_verification_timestamp_idx ON audit_integrity_log USING btree (verification_timestamp);
CREATE INDEX audit_integrity_log_verification_status_idx ON audit_integrity_log USING btree (verification_status);
CREATE INDEX audit_integrity_log_verified_by_idx ON audit_integrity_log USING btree (verified_by);

-- --------------------------------------------------- audit_retention_policy
CREATE TABLE audit_retention_policy (
    id serial PRIMARY KEY,
    policy_name varchar(100) NOT NULL,
    retention_days integer NOT NULL,
    archive_after_days integer,
    delete_after_days integer,
    data_classification varchar(20) NOT NULL,
    description text,
    is_active varchar(10) DEFAULT 'true',
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    created_by varchar(255),
    CONSTRAINT audit_retention_policy_policy_name_unique UNIQUE (policy_name)
);
CREATE INDEX audit_retention_policy_policy_name_idx ON audit_retention_policy USING btree (policy_name);
CREATE INDEX audit_retention_policy_data_classification_idx ON audit_retention_policy USING btree (data_classification);
CREATE INDEX audit_retention_policy_is_active_idx ON audit_retention_policy USING btree (is_active);
CREATE INDEX audit_retention_policy_created_at_idx ON audit_retention_policy USING btree (created_at);

-- ------------------------------------------------------------------- alerts
CREATE TABLE alerts (
    id varchar(255) PRIMARY KEY,
    organization_id varchar(255) NOT NULL,
    severity varchar(20) NOT NULL,
    type varchar(20) NOT NULL,
    title varchar(500) NOT NULL,
    description text NOT NULL,
    source varchar(100) NOT NULL,
    correlation_id varchar(255),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    resolved varchar(10) NOT NULL DEFAULT 'false',
    resolved_at timestamp with time zone,
    resolved_by varchar(255),
    resolution_notes text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    acknowledged varchar(10) NOT NULL DEFAULT 'false',
    acknowledged_at timestamp with time zone,
    acknowledged_by varchar(255)
);
CREATE INDEX alerts_organization_id_idx ON alerts USING btree (organization_id);
CREATE INDEX alerts_organization_resolved_idx ON alerts USING btree (organization_id, resolved);
CREATE INDEX alerts_organization_severity_idx ON alerts USING btree (organization_id, severity);
CREATE INDEX alerts_organization_type_idx ON alerts USING btree (organization_id, type);
CREATE INDEX alerts_created_at_idx ON alerts USING btree (created_at);
CREATE INDEX alerts_updated_at_idx ON alerts USING btree (updated_at);
CREATE INDEX alerts_resolved_at_idx ON alerts USING btree (resolved_at);
CREATE INDEX alerts_severity_idx ON alerts USING btree (severity);
CREATE INDEX alerts_type_idx ON alerts USING btree (type);
CREATE INDEX alerts_source_idx ON alerts USING btree (source);
CREATE INDEX alerts_correlation_id_idx ON alerts USING btree (correlation_id);
CREATE INDEX alerts_org_created_resolved_idx ON alerts USING btree (organization_id, created_at, resolved);
CREATE INDEX alerts_org_severity_created_idx ON alerts USING btree (organization_id, severity, created_at);
CREATE INDEX alerts_resolved_by_idx ON alerts USING btree (resolved_by);
CREATE INDEX alerts_organization_acknowledged_idx ON alerts USING btree (organization_id, acknowledged);
CREATE INDEX alerts_acknowledged_at_idx ON alerts USING btree (acknowledged_at);

-- -------------------------------------------------------- scheduled_reports
CREATE TABLE scheduled_reports (
    id varchar(255) PRIMARY KEY,
    name varchar(255) NOT NULL,
    description text,
    organization_id varchar(255) NOT NULL,
    template_id varchar(255),
    criteria jsonb NOT NULL,
    format varchar(50) NOT NULL,
    schedule jsonb NOT NULL,
    delivery jsonb NOT NULL,
    enabled varchar(10) NOT NULL DEFAULT 'true',
    last_run timestamp with time zone,
    next_run timestamp with time zone,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    created_by varchar(255) NOT NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_by varchar(255),
    report_type varchar(50) NOT NULL,
    export jsonb NOT NULL,
    run_id varchar(255)
);
CREATE INDEX scheduled_reports_organization_id_idx ON scheduled_reports USING btree (organization_id);
CREATE INDEX scheduled_reports_template_id_idx ON scheduled_reports USING btree (template_id);
CREATE INDEX scheduled_reports_enabled_idx ON scheduled_reports USING btree (enabled);
CREATE INDEX scheduled_reports_next_run_idx ON scheduled_reports USING btree (next_run);
CREATE INDEX scheduled_reports_created_at_idx ON scheduled_reports USING btree (created_at);
CREATE INDEX scheduled_reports_created_by_idx ON scheduled_reports USING btree (created_by);
CREATE INDEX scheduled_reports_org_enabled_idx ON scheduled_reports USING btree (organization_id, enabled);
CREATE INDEX scheduled_reports_org_next_run_idx ON scheduled_reports USING btree (organization_id, next_run);
CREATE INDEX scheduled_reports_enabled_next_run_idx ON scheduled_reports USING btree (enabled, next_run);

-- -------------------------------------------------------- report_executions
CREATE TABLE report_executions (
    id varchar(255) PRIMARY KEY,
    report_config_id varchar(255) NOT NULL,
    organization_id varchar(255) NOT NULL,
    scheduled_time timestamp with time zone NOT NULL,
    execution_time timestamp with time zone NOT NULL,
    status varchar(20) NOT NULL,
    duration integer,
    records_processed integer,
    export_result jsonb,
    delivery_attempts jsonb NOT NULL DEFAULT '[]'::jsonb,
    error text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    integrity_report jsonb,
    run_id varchar(255) NOT NULL,
    CONSTRAINT report_executions_report_config_id_scheduled_reports_id_fk
        FOREIGN KEY (report_config_id) REFERENCES scheduled_reports (id)
);
CREATE INDEX report_executions_report_config_id_idx ON report_executions USING btree (report_config_id);
CREATE INDEX report_executions_organization_id_idx ON report_executions USING btree (organization_id);
CREATE INDEX report_executions_status_idx ON report_executions USING btree (status);
CREATE INDEX report_executions_scheduled_time_idx ON report_executions USING btree (scheduled_time);
CREATE INDEX report_executions_execution_time_idx ON report_executions USING btree (execution_time);
CREATE INDEX report_executions_created_at_idx ON report_executions USING btree (created_at);
CREATE INDEX report_executions_org_status_idx ON report_executions USING btree (organization_id, status);
CREATE INDEX report_executions_config_execution_time_idx ON report_executions USING btree (report_config_id, execution_time);
CREATE INDEX report_executions_org_execution_time_idx ON report_executions USING btree (organization_id, execution_time);

-- --------------------------------------------------------- report_templates
CREATE TABLE report_templates (
    id varchar(255) PRIMARY KEY,
    name varchar(255) NOT NULL,
    description text,
    organization_id varchar(255) NOT NULL,
    report_type varchar(100) NOT NULL,
    default_criteria jsonb NOT NULL,
    default_format varchar(50) NOT NULL,
    default_export_config jsonb NOT NULL,
    tags jsonb NOT NULL DEFAULT '[]'::jsonb,
    is_active varchar(10) NOT NULL DEFAULT 'true',
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    created_by varchar(255) NOT NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_by varchar(255)
);
CREATE INDEX report_templates_organization_id_idx ON report_templates USING btree (organization_id);
CREATE INDEX report_templates_report_type_idx ON report_templates USING btree (report_type);
CREATE INDEX report_templates_is_active_idx ON report_templates USING btree (is_active);
CREATE INDEX report_templates_created_at_idx ON report_templates USING btree (created_at);
CREATE INDEX report_templates_created_by_idx ON report_templates USING btree (created_by);
CREATE INDEX report_templates_name_idx ON report_templates USING btree (name);
CREATE INDEX report_templates_org_active_idx ON report_templates USING btree (organization_id, is_active);
CREATE INDEX report_templates_org_type_idx ON report_templates USING btree (organization_id, report_type);
CREATE INDEX report_templates_active_type_idx ON report_templates USING btree (is_active, report_type);
CREATE INDEX report_templates_tags_idx ON report_templates USING btree (tags);

-- -------------------------------------------------------- error_aggregation
CREATE TABLE error_aggregation (
    aggregation_key varchar(255) PRIMARY KEY,
    category varchar(50) NOT NULL,
    severity varchar(20) NOT NULL,
    count integer NOT NULL DEFAULT 0,
    error_rate varchar(20) NOT NULL DEFAULT '0',
    trend varchar(20) NOT NULL DEFAULT 'STABLE',
    first_occurrence timestamp with time zone NOT NULL,
    last_occurrence timestamp with time zone NOT NULL,
    affected_components jsonb NOT NULL DEFAULT '[]'::jsonb,
    affected_users jsonb NOT NULL DEFAULT '[]'::jsonb,
    samples jsonb NOT NULL DEFAULT '[]'::jsonb,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);
CREATE INDEX error_aggregation_category_idx ON error_aggregation USING btree (category);
CREATE INDEX error_aggregation_severity_idx ON error_aggregation USING btree (severity);
CREATE INDEX error_aggregation_count_idx ON error_aggregation USING btree (count);
CREATE INDEX error_aggregation_trend_idx ON error_aggregation USING btree (trend);
CREATE INDEX error_aggregation_first_occurrence_idx ON error_aggregation USING btree (first_occurrence);
CREATE INDEX error_aggregation_last_occurrence_idx ON error_aggregation USING btree (last_occurrence);
CREATE INDEX error_aggregation_updated_at_idx ON error_aggregation USING btree (updated_at);
CREATE INDEX error_aggregation_category_count_idx ON error_aggregation USING btree (category, count);
CREATE INDEX error_aggregation_severity_count_idx ON error_aggregation USING btree (severity, count);

-- ------------------------------------------------------------- audit_preset
CREATE TABLE audit_preset (
    id serial PRIMARY KEY,
    name varchar(255) NOT NULL,
    description text,
    organization_id varchar(255) NOT NULL,
    action varchar(255) NOT NULL,
    data_classification varchar(20) NOT NULL,
    required_fields jsonb,
    default_values jsonb NOT NULL,
    validation jsonb DEFAULT '{"maxStringLength":10000,"allowedDataClassifications":["PUBLIC","INTERNAL","CONFIDENTIAL","PHI"],"requiredFields":["timestamp","action","status"],"maxCustomFieldDepth":3,"allowedEventVersions":["1.0","1.1","2.0"]}'::jsonb,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    created_by varchar(255) NOT NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    updated_by varchar(255)
);
CREATE INDEX audit_preset_name_idx ON audit_preset USING btree (name);
CREATE INDEX audit_preset_organization_id_idx ON audit_preset USING btree (organization_id);
CREATE INDEX audit_preset_data_classification_idx ON audit_preset USING btree (data_classification);
CREATE INDEX audit_preset_created_at_idx ON audit_preset USING btree (created_at);
CREATE INDEX audit_preset_updated_at_idx ON audit_preset USING btree (updated_at);
CREATE INDEX audit_preset_created_by_idx ON audit_preset USING btree (created_by);
CREATE INDEX audit_preset_updated_by_idx ON audit_preset USING btree (updated_by);
CREATE UNIQUE INDEX audit_preset_name_org_unique ON audit_preset USING btree (name, organization_id);

-- ---------------------------------------------------------- archive_storage
CREATE TABLE archive_storage (
    id varchar(255) PRIMARY KEY,
    metadata jsonb NOT NULL,
    data text NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    retrieved_count integer NOT NULL DEFAULT 0,
    last_retrieved_at timestamp with time zone
);
CREATE INDEX archive_storage_created_at_idx ON archive_storage USING btree (created_at);
CREATE INDEX archive_storage_retrieved_count_idx ON archive_storage USING btree (retrieved_count);
CREATE INDEX archive_storage_last_retrieved_at_idx ON archive_storage USING btree (last_retrieved_at);
CREATE INDEX archive_storage_retention_policy_idx ON archive_storage USING btree ((metadata->>'retentionPolicy'));
CREATE INDEX archive_storage_data_classification_idx ON archive_storage USING btree ((metadata->>'dataClassification'));
CREATE INDEX archive_storage_date_range_start_idx ON archive_storage USING btree ((((metadata->>'dateRange')::jsonb)->>'start'));
CREATE INDEX archive_storage_date_range_end_idx ON archive_storage USING btree ((((metadata->>'dateRange')::jsonb)->>'end'));

-- -------------------------------------------------------- archive_dlq_event
CREATE TABLE archive_dlq_event (
    id serial PRIMARY KEY,
    "timestamp" timestamp with time zone NOT NULL,
    action varchar(255) NOT NULL,
    failure_reason varchar(255) NOT NULL,
    failure_count integer NOT NULL,
    first_failure_time timestamp with time zone NOT NULL,
    last_failure_time timestamp with time zone NOT NULL,
    original_job_id varchar(255),
    original_queue_name varchar(255),
    original_event jsonb NOT NULL,
    metadata jsonb NOT NULL
);
CREATE INDEX dlq_event_timestamp_idx ON archive_dlq_event USING btree ("timestamp");
CREATE INDEX dlq_event_action_idx ON archive_dlq_event USING btree (action);
CREATE INDEX dlq_event_failure_reason_idx ON archive_dlq_event USING btree (failure_reason);
CREATE INDEX dlq_event_failure_count_idx ON archive_dlq_event USING btree (failure_count);
CREATE INDEX dlq_event_first_failure_time_idx ON archive_dlq_event USING btree (first_failure_time);
CREATE INDEX dlq_event_last_failure_time_idx ON archive_dlq_event USING btree (last_failure_time);
CREATE INDEX dlq_event_original_job_id_idx ON archive_dlq_event USING btree (original_job_id);
CREATE INDEX dlq_event_original_queue_name_idx ON archive_dlq_event USING btree (original_queue_name);

-- ------------------------------------------------------ config_change_event
CREATE TABLE config_change_event (
    id serial PRIMARY KEY,
    "timestamp" timestamp with time zone NOT NULL,
    field varchar(255) NOT NULL,
    previous_value jsonb NOT NULL,
    new_value jsonb NOT NULL,
    changed_by varchar(255) NOT NULL,
    reason varchar(255),
    environment varchar(255) NOT NULL,
    previous_version varchar(255),
    new_version varchar(255)
);
CREATE INDEX config_change_event_timestamp_idx ON config_change_event USING btree ("timestamp");
CREATE INDEX config_change_event_field_idx ON config_change_event USING btree (field);
CREATE INDEX config_change_event_changed_by_idx ON config_change_event USING btree (changed_by);
CREATE INDEX config_change_event_environment_idx ON config_change_event USING btree (environment);
CREATE INDEX config_change_event_previous_version_idx ON config_change_event USING btree (previous_version);
CREATE INDEX config_change_event_new_version_idx ON config_change_event USING btree (new_version);

-- -------------------------------------------------------- pseudonym_mapping
CREATE TABLE pseudonym_mapping (
    id serial PRIMARY KEY,
    "timestamp" timestamp with time zone NOT NULL,
    pseudonym_id text NOT NULL,
    original_id text NOT NULL
);
CREATE INDEX pseudonym_mapping_timestamp_idx ON pseudonym_mapping USING btree ("timestamp");
-- audit_db 0.3.0: hash indexes (same names as the original's btree ones). A btree
-- entry is limited to about 2.7 kB, and an encryption pseudonym or a sealed original
-- of a 10 kB value is larger; both columns are only ever compared for equality.
CREATE INDEX pseudonym_mapping_pseudonym_id_idx ON pseudonym_mapping USING hash (pseudonym_id);
CREATE INDEX pseudonym_mapping_original_id_idx ON pseudonym_mapping USING hash (original_id);
-- audit_db 0.3.0: the mapping names its strategy and key id and carries a keyed
-- blind index of the original (original_id itself is AES-256-GCM ciphertext), so
-- one original maps to one pseudonym per strategy without decrypting any row.
-- Rows with strategy NULL predate audit_db (adopted from the original service).
ALTER TABLE pseudonym_mapping
    ADD COLUMN strategy text CONSTRAINT pseudonym_mapping_strategy_check
        CHECK (strategy IN ('token', 'encryption')),
    ADD COLUMN key_id text,
    ADD COLUMN blind_index text;
CREATE UNIQUE INDEX pseudonym_mapping_strategy_blind_index_key
    ON pseudonym_mapping USING btree (strategy, blind_index);

-- ------------------------------------------------------------- integrity
-- audit_db 0.4.0: every audit_log row is hashed, signed and chained by the trigger
-- audit_log_integrity (finalize.sql); see README "Tamper evidence".
ALTER TABLE audit_log
    ADD COLUMN signature text,
    ADD COLUMN chain_seq bigint,
    ADD COLUMN chain_hash varchar(64);
CREATE INDEX audit_log_chain_idx ON audit_log USING btree ((coalesce(organization_id, '')), chain_seq);

-- The head of each organization's chain; locked by an insert until it commits.
CREATE TABLE audit_chain_head (
    chain_key text PRIMARY KEY,
    seq bigint NOT NULL,
    hash varchar(64) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit_chain_head IS
'Head of each audit_log hash chain (one per organization_id, '''' for none): last sequence number and chain hash.';

-- Runs of chain links whose rows left audit_log legitimately (retention, erasure):
-- verification accepts exactly these gaps and continues from last_hash.
CREATE TABLE audit_chain_retired (
    chain_key text NOT NULL,
    from_seq bigint NOT NULL,
    to_seq bigint NOT NULL,
    last_hash varchar(64) NOT NULL,
    rows bigint NOT NULL,
    reason text NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (chain_key, from_seq)
);
COMMENT ON TABLE audit_chain_retired IS
'Chain runs whose audit_log rows were removed by retention or erasure, with the last chain hash of each run, so the chain still verifies across them.';

-- audit_db 0.6.0: tamper evidence without shared state on the insert path. The
-- trigger audit_log_integrity (finalize.sql, function audit_log_seal_trigger) writes
-- row_hash (audit_db.event.v2), signature and seal_epoch, and personal_keys (the
-- details keys that were personal when the row was written); the application's own
-- hash and hash_algorithm are kept as written. The sealer writes one signed block per
-- epoch. Rows of 0.4.0/0.5.0 keep their chain_seq / chain_hash and are verified
-- through audit_chain_head / audit_chain_retired, which no longer move.
ALTER TABLE audit_log
    ADD COLUMN row_hash varchar(64),
    ADD COLUMN seal_epoch bigint,
    ADD COLUMN personal_keys text[];
CREATE INDEX audit_log_seal_epoch_idx ON audit_log USING btree (seal_epoch, id);

CREATE TABLE audit_seal_block (
    epoch bigint PRIMARY KEY,
    rows bigint NOT NULL,
    sum text NOT NULL,
    prev_hash varchar(64) NOT NULL,
    block_hash varchar(64) NOT NULL,
    signature text,
    legacy_heads jsonb,
    sealed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    horizon_id bigint,
    horizon_rows bigint
);
COMMENT ON TABLE audit_seal_block IS
'One signed block per sealed epoch of audit_log: row count, MSet-Add-Hash sum of the rows'' signatures, hash chained to the previous block. The anchor (epoch 0, written by the 0.5.0 -> 0.6.0 step or an adopting install) ties the chain to the per-organization chains written before 0.6.0 (legacy_heads) and records the horizon: the highest id and the number of the rows that existed then without 0.6.0 evidence.';

CREATE TABLE audit_seal_retired (
    id bigserial PRIMARY KEY,
    epoch bigint NOT NULL,
    rows bigint NOT NULL,
    sum text NOT NULL,
    reason text NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX audit_seal_retired_epoch_idx ON audit_seal_retired USING btree (epoch);
COMMENT ON TABLE audit_seal_retired IS
'Rows that left audit_log through audit_db (retention, erasure, dropped or detached partitions), per epoch: count and sum, so present + retired = sealed still holds for each block.';

CREATE TABLE pseudonym_forgotten (
    pseudonym_id text NOT NULL,
    key_id text NOT NULL,
    reference text NOT NULL,
    signature text NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX pseudonym_forgotten_pseudonym_id_idx ON pseudonym_forgotten USING hash (pseudonym_id);
-- Published with the mappings (every change): without a key, an UPDATE or DELETE
-- would fail for want of a replica identity.
ALTER TABLE pseudonym_forgotten REPLICA IDENTITY FULL;
COMMENT ON TABLE pseudonym_forgotten IS
'What a forgotten token or encryption pseudonym stood for in the row hashes: per key, the reference (the hash pseudonym under that key) of its original, signed with that key, written by audit_forget_subject before the mapping goes. Verification checks the rows that still carry the pseudonym with it; a pseudonym neither mapped nor here with a valid signature is a hash mismatch (issue 25). The original itself is not kept.';

CREATE TABLE audit_subject_command (
    id bigserial PRIMARY KEY,
    operation text NOT NULL
        CONSTRAINT audit_subject_command_operation_check
        CHECK (operation IN ('pseudonymize', 'delete', 'forget')),
    payload text NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE audit_subject_command IS
'Always empty. Each subject function (pseudonymize, delete, forget) inserts its operation here, the subject encrypted under the root key, and deletes it in the same transaction: logical replication carries the insert to an archive, whose replica trigger runs the same operation over the archive''s rows (docs/scale-out.md).';

-- ----------------------------------------------------------- audit_subject_map
-- Where a data subject appears (issue 18): one row per column that holds a person
-- identifier. The subject functions export, pseudonymize and erase at every place;
-- builtin rows cover the original's tables, a DPO adds their own (audit_db_gdpr).
CREATE TABLE audit_subject_map (
    relation regclass NOT NULL,
    column_name name NOT NULL,
    role text NOT NULL
        CONSTRAINT audit_subject_map_role_check CHECK (role IN ('actor', 'target', 'mentioned')),
    kind text NOT NULL DEFAULT 'column'
        CONSTRAINT audit_subject_map_kind_check CHECK (kind IN ('column', 'json_array', 'details_keys')),
    on_erasure text NOT NULL DEFAULT 'pseudonymize'
        CONSTRAINT audit_subject_map_on_erasure_check CHECK (on_erasure IN ('pseudonymize', 'delete_row')),
    builtin boolean NOT NULL DEFAULT false,
    note text,
    PRIMARY KEY (relation, column_name)
);
COMMENT ON TABLE audit_subject_map IS
'Where a data subject appears: per table and column, the role the person has there (actor, target, mentioned), how the value is stored (column, json_array of identifiers, details_keys = the personal keys of audit_log.details), and what erasure does (pseudonymize by hash, or delete_row). Builtin rows cover the original''s tables and cannot be changed; a DPO (audit_db_gdpr) adds rows for their own tables. Read by audit_export_subject, audit_pseudonymize_subject, audit_delete_subject and audit_subject_rows.';

-- --------------------------------------------------- audit_partition_config
-- One row per partitioned parent that audit_partition_maintenance() keeps.
-- retention NULL = keep every partition; lock_timeout bounds every lock wait of
-- maintenance; last_run_* record the outcome of the last maintenance run.
CREATE TABLE audit_partition_config (
    parent regclass PRIMARY KEY,
    "interval" text NOT NULL DEFAULT 'monthly'
        CONSTRAINT audit_partition_config_interval_check
        CHECK ("interval" IN ('daily', 'weekly', 'monthly')),
    premake integer NOT NULL DEFAULT 6
        CONSTRAINT audit_partition_config_premake_check CHECK (premake BETWEEN 0 AND 1000),
    retention interval
        CONSTRAINT audit_partition_config_retention_check CHECK (retention > interval '0'),
    keep_table boolean NOT NULL DEFAULT false,
    auto_create boolean NOT NULL DEFAULT true,
    auto_drop boolean NOT NULL DEFAULT true,
    lock_timeout interval NOT NULL DEFAULT interval '2 seconds'
        CONSTRAINT audit_partition_config_lock_timeout_check
        CHECK (lock_timeout > interval '0' AND lock_timeout <= interval '1 hour'),
    last_run_at timestamptz,
    last_run_result text,
    -- 0.6.0 (issue 19): whether the parent keeps a DEFAULT partition; NULL = as it is.
    default_partition boolean
);
COMMENT ON TABLE audit_partition_config IS
'Partition upkeep per parent: interval (daily, weekly, monthly), premake periods ahead, retention (NULL = keep all), keep_table (detach and keep instead of drop), auto_create/auto_drop switches, lock_timeout for maintenance, the last maintenance run, and default_partition (false = maintenance moves the DEFAULT partition''s rows into partitions and drops it, so that creation never waits for a reader or pg_dump; true = creates one when missing; NULL = leaves it as it is).';

-- audit_db 0.5.0: a config row must name a table maintenance can keep, checked when
-- the row is written rather than reported as a failure by every maintenance run.
CREATE FUNCTION audit_partition_config_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (
        SELECT 1
          FROM pg_catalog.pg_partitioned_table pt
          JOIN pg_catalog.pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
         WHERE pt.partrelid = NEW.parent AND pt.partstrat = 'r' AND pt.partnatts = 1
           AND a.atttypid = 'pg_catalog.timestamptz'::pg_catalog.regtype) THEN
        RAISE EXCEPTION '% is not a table partitioned by range on one timestamptz column', NEW.parent
              USING ERRCODE = 'wrong_object_type',
                    DETAIL = 'audit_partition_config names tables that audit_partition_maintenance() keeps.',
                    HINT = 'Declare the table PARTITION BY RANGE on its timestamptz column, or convert it with audit_convert_to_partitioned().';
    END IF;
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION audit_partition_config_check() FROM PUBLIC;
COMMENT ON FUNCTION audit_partition_config_check() IS
'BEFORE INSERT OR UPDATE OF parent on audit_partition_config: refuses (42809) a parent that is not partitioned by range on one timestamptz column.';
CREATE TRIGGER audit_partition_config_check BEFORE INSERT OR UPDATE OF parent ON audit_partition_config
    FOR EACH ROW EXECUTE FUNCTION audit_partition_config_check();
-- Its rows for audit_log and error_log are inserted by finalize.sql (not while
-- pg_restore recreates the extension: the dump brings them).

-- ------------------------------------------------- audit_schema_migrations
-- The migration journal: the install script and every upgrade script record
-- themselves here (a failed script rolls back with its transaction, so success is
-- true for every row PostgreSQL keeps; the column is there for imported history).
CREATE TABLE audit_schema_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text,
    applied_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    applied_by name NOT NULL DEFAULT session_user,
    execution_ms integer,
    success boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE audit_schema_migrations IS
'Migration journal of audit_db: one row per install or upgrade script applied (version, name, sha256 of the script file, when, by whom, how long), plus history imported when adopting a Drizzle-managed database.';

CREATE FUNCTION audit_migrations()
RETURNS TABLE(version text, name text, checksum text, applied_at timestamptz,
              applied_by name, execution_ms integer, success boolean)
LANGUAGE sql STABLE
AS $fn$
    SELECT m.version, m.name, m.checksum, m.applied_at, m.applied_by, m.execution_ms, m.success
      FROM @extschema@.audit_schema_migrations m
     ORDER BY m.applied_at, m.version
$fn$;

CREATE FUNCTION audit_schema_version() RETURNS text
LANGUAGE sql STABLE
AS $fn$
    SELECT e.extversion::text FROM pg_catalog.pg_extension e WHERE e.extname = 'audit_db'
$fn$;

CREATE FUNCTION audit_pending_migrations()
RETURNS TABLE(target_version text, path text)
LANGUAGE sql STABLE
AS $fn$
    SELECT u.target::text, u.path
      FROM pg_catalog.pg_extension_update_paths('audit_db') u
      JOIN pg_catalog.pg_extension e ON e.extname = 'audit_db' AND u.source = e.extversion
     WHERE u.path IS NOT NULL
     ORDER BY pg_catalog.string_to_array(pg_catalog.regexp_replace(u.target, '[^0-9.]', '', 'g'), '.')::int[], u.target
$fn$;

-- ------------------------------------------------------------------- roles
-- Roles are cluster-wide and survive DROP EXTENSION by design (they may own
-- grants in other databases). Created only if missing.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_db_writer') THEN
        CREATE ROLE audit_db_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_db_reader') THEN
        CREATE ROLE audit_db_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_db_admin') THEN
        CREATE ROLE audit_db_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_db_gdpr') THEN
        CREATE ROLE audit_db_gdpr NOLOGIN;
    END IF;
END
$roles$;

-- ------------------------------------------------------ partition listing
-- Bounds are read back from pg_get_expr(relpartbound); the function pins
-- DateStyle so that the text it parses is ISO whatever the session uses.
CREATE FUNCTION audit_partitions(parent regclass DEFAULT 'audit_log')
RETURNS TABLE(partition regclass, range_from timestamptz, range_to timestamptz,
              is_default boolean, row_estimate bigint, total_bytes bigint)
LANGUAGE sql STABLE STRICT
SET datestyle TO 'ISO, YMD'
AS $fn$
    SELECT c.oid::regclass,
           CASE WHEN b.m IS NOT NULL THEN coalesce(b.m[1]::timestamptz, '-infinity') END,
           CASE WHEN b.m IS NOT NULL THEN coalesce(b.m[2]::timestamptz, 'infinity') END,
           pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT',
           CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END,
           pg_catalog.pg_total_relation_size(c.oid)
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
      CROSS JOIN LATERAL (
            SELECT pg_catalog.regexp_match(
                       pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                       'FROM \((?:''([^'']*)''|MINVALUE)\) TO \((?:''([^'']*)''|MAXVALUE)\)') AS m) b
     WHERE i.inhparent = parent
     ORDER BY 4, 2, c.relname
$fn$;
COMMENT ON FUNCTION audit_partitions(regclass) IS
'Lists the partitions of a range-partitioned audit table: bounds (MINVALUE/MAXVALUE as -infinity/infinity, NULL for DEFAULT), whether it is the DEFAULT partition, planner row estimate (NULL before the first ANALYZE) and total size in bytes.';
