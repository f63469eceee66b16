//! `audit_schema_snapshot()` and `audit_verify_schema()`: the live catalog of the
//! extension's objects, and its comparison with the manifest shipped for the installed
//! version (`sql/manifest/audit_db--<version>.tsv`, embedded in this library).
//!
//! The snapshot covers what the extension owns (pg_depend deptype 'e'): tables and
//! sequences, columns (type, nullability, default), indexes, constraints, table and
//! function privileges, function definitions; plus one live-only check, that every
//! partition of an extension parent carries each of the parent's indexes.

use crate::base::error::{AuditError, AuditResult, OrReport};
use audit_db_core::manifest::{self, Entry};
use pgrx::prelude::*;

/// Manifests of every released version this library serves (0.1.0 predates them).
const MANIFESTS: &[(&str, &str)] = &[
    ("0.2.0", include_str!("../../sql/manifest/audit_db--0.2.0.tsv")),
    ("0.3.0", include_str!("../../sql/manifest/audit_db--0.3.0.tsv")),
    ("0.4.0", include_str!("../../sql/manifest/audit_db--0.4.0.tsv")),
    ("0.5.0", include_str!("../../sql/manifest/audit_db--0.5.0.tsv")),
    ("0.6.0", include_str!("../../sql/manifest/audit_db--0.6.0.tsv")),
];

/// Runs with `search_path = pg_catalog, pg_temp` (issue 25), so names come out
/// qualified: `snapshot()` takes the extension's schema off them; index definitions
/// and function bodies have it replaced here, so that the snapshot is the same
/// whatever schema the extension is in.
const SNAPSHOT_SQL: &str = r#"
WITH ext AS (
    SELECT e.oid, n.nspname FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'audit_db'),
members AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid
       AND d.deptype = 'e'),
rels AS (
    SELECT c.* FROM pg_catalog.pg_class c
      JOIN members m ON m.classid = 'pg_catalog.pg_class'::regclass AND m.objid = c.oid),
procs AS (
    -- Functions in the extension's schema (cargo pgrx test adds members elsewhere).
    SELECT p.* FROM pg_catalog.pg_proc p
      JOIN members m ON m.classid = 'pg_catalog.pg_proc'::regclass AND m.objid = p.oid
     WHERE p.pronamespace = (SELECT e.extnamespace FROM pg_catalog.pg_extension e
                              WHERE e.extname = 'audit_db')),
grants AS (
    SELECT c.oid, pg_catalog.string_agg(
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END
               || ':' || a.privilege_type, ', '
               ORDER BY 1) AS acl
      FROM rels c, LATERAL pg_catalog.aclexplode(c.relacl) a
     WHERE a.grantee <> c.relowner GROUP BY c.oid),
fgrants AS (
    SELECT p.oid, pg_catalog.string_agg(
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END
               || ':' || a.privilege_type, ', '
               ORDER BY 1) AS acl
      FROM procs p, LATERAL pg_catalog.aclexplode(p.proacl) a
     WHERE a.grantee <> p.proowner GROUP BY p.oid)
SELECT 'table', c.relname::text,
       CASE c.relkind
            WHEN 'p' THEN 'partitioned table ' || pg_catalog.pg_get_partkeydef(c.oid)
            WHEN 'S' THEN 'sequence'
            WHEN 'v' THEN 'view'
            ELSE CASE WHEN c.relispartition
                      THEN 'partition of ' || (SELECT i.inhparent::regclass::text FROM pg_catalog.pg_inherits i
                                                WHERE i.inhrelid = c.oid)
                           || ' ' || pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                      ELSE 'table' END
       END
  FROM rels c
UNION ALL
SELECT 'column', c.relname || '.' || a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN '; not null' ELSE '; null' END
       || '; ' || coalesce('default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), 'no default')
  FROM rels c
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relkind IN ('r', 'p', 'v')
UNION ALL
SELECT 'index', i.relname::text,
       pg_catalog.replace(pg_catalog.pg_get_indexdef(i.oid), ' ' || (SELECT pg_catalog.quote_ident(nspname) FROM ext) || '.', ' ')
  FROM rels c JOIN pg_catalog.pg_index x ON x.indrelid = c.oid
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
UNION ALL
-- PostgreSQL 18 also stores NOT NULL as constraints (contype 'n'), named by the
-- server: the column entries above already say "not null".
SELECT 'constraint', c.relname || '.' || k.conname, pg_catalog.pg_get_constraintdef(k.oid)
  FROM rels c JOIN pg_catalog.pg_constraint k ON k.conrelid = c.oid
 WHERE k.contype <> 'n'
UNION ALL
SELECT 'table privilege', c.relname::text, coalesce(g.acl, 'none')
  FROM rels c LEFT JOIN grants g ON g.oid = c.oid
UNION ALL
SELECT 'function', p.oid::regprocedure::text,
       'returns ' || pg_catalog.pg_get_function_result(p.oid)
       || CASE WHEN p.prosecdef THEN '; security definer' ELSE '; security invoker' END
       || '; ' || l.lanname || ' '
       || pg_catalog.md5(pg_catalog.replace(p.prosrc, (SELECT pg_catalog.quote_ident(nspname) FROM ext) || '.', '@extschema@.'))
       || coalesce('; set ' || pg_catalog.replace(pg_catalog.array_to_string(p.proconfig, ', '),
                                                  (SELECT pg_catalog.quote_ident(nspname) FROM ext), '@extschema@'), '')
  FROM procs p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 'function privilege', p.oid::regprocedure::text, coalesce(g.acl, 'none')
  FROM procs p LEFT JOIN fgrants g ON g.oid = p.oid
UNION ALL
-- audit_db 0.5.0: triggers (the integrity, append-only and config checks), with
-- whether they fire; clones on partitions are checked by PARTITION_TRIGGER_SQL.
SELECT 'trigger', c.relname || '.' || t.tgname,
       pg_catalog.replace(pg_catalog.pg_get_triggerdef(t.oid),
                          ' ' || (SELECT pg_catalog.quote_ident(nspname) FROM ext) || '.', ' ')
       || CASE t.tgenabled WHEN 'O' THEN '; enabled' WHEN 'D' THEN '; disabled'
                           WHEN 'R' THEN '; enabled on replicas only' ELSE '; enabled always' END
  FROM rels c JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid
 WHERE NOT t.tgisinternal AND t.tgparentid = 0
"#;

/// Every partition of an extension parent must carry each of the parent's indexes.
const PARTITION_INDEX_SQL: &str = r#"
WITH ext AS (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'audit_db')
SELECT 'index', part.relname || ': ' || pi.relname, 'missing'
  FROM pg_catalog.pg_depend d, ext
  JOIN pg_catalog.pg_class parent ON true
  JOIN pg_catalog.pg_inherits inh ON inh.inhparent = parent.oid
  JOIN pg_catalog.pg_class part ON part.oid = inh.inhrelid
  JOIN pg_catalog.pg_index px ON px.indrelid = parent.oid
  JOIN pg_catalog.pg_class pi ON pi.oid = px.indexrelid
 WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid
   AND d.deptype = 'e' AND d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = parent.oid
   AND parent.relkind = 'p'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits ii
                     JOIN pg_catalog.pg_index cx ON cx.indexrelid = ii.inhrelid
                    WHERE ii.inhparent = pi.oid AND cx.indrelid = part.oid)
 ORDER BY 2
"#;

/// Every partition of an extension parent must carry each of the parent's row
/// triggers, firing as the parent's does (a trigger disabled on one partition would
/// let rows into it unhashed, or let them be edited).
const PARTITION_TRIGGER_SQL: &str = r#"
WITH ext AS (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'audit_db')
SELECT 'trigger', part.relname || ': ' || pt.tgname,
       CASE WHEN ct.oid IS NULL THEN 'missing' ELSE 'disabled' END
  FROM pg_catalog.pg_depend d, ext
  JOIN pg_catalog.pg_class parent ON true
  JOIN pg_catalog.pg_inherits inh ON inh.inhparent = parent.oid
  JOIN pg_catalog.pg_class part ON part.oid = inh.inhrelid
  JOIN pg_catalog.pg_trigger pt ON pt.tgrelid = parent.oid AND NOT pt.tgisinternal
                               AND pt.tgparentid = 0 AND (pt.tgtype & 1) = 1
  LEFT JOIN pg_catalog.pg_trigger ct ON ct.tgrelid = part.oid AND ct.tgparentid = pt.oid
 WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid
   AND d.deptype = 'e' AND d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = parent.oid
   AND parent.relkind = 'p'
   AND (ct.oid IS NULL OR ct.tgenabled <> pt.tgenabled)
 ORDER BY 2
"#;

fn triples(query: &str) -> AuditResult<Vec<Entry>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(query, None, &[])? {
            out.push((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<String>(3)?.unwrap_or_default(),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .map_err(AuditError::from)
}

/// Settings that change how pg_get_expr() prints defaults and constraints
/// (pg_regress, for one, runs with IntervalStyle = postgres_verbose). The snapshot
/// pins them for its own statements and puts the caller's values back.
const PINNED_SETTINGS: &[(&str, &str)] =
    &[("IntervalStyle", "postgres"), ("DateStyle", "ISO, MDY"), ("extra_float_digits", "1")];

fn set_local(name: &str, value: &str) -> AuditResult<()> {
    // A SELECT, read-only: the snapshot also runs on a hot standby.
    crate::base::spi_util::read_one::<String>("SELECT pg_catalog.set_config($1, $2, true)", &[name.into(), value.into()])?;
    Ok(())
}

pub fn snapshot() -> AuditResult<Vec<Entry>> {
    let mut saved = Vec::new();
    for (name, value) in PINNED_SETTINGS {
        saved.push(
            crate::base::spi_util::read_one::<String>("SELECT pg_catalog.current_setting($1)", &[(*name).into()])?
                .unwrap_or_default(),
        );
        set_local(name, value)?;
    }
    let rows = triples(SNAPSHOT_SQL);
    for ((name, _), value) in PINNED_SETTINGS.iter().zip(saved) {
        set_local(name, &value)?;
    }
    // Names and types of the extension's own objects print qualified under the pinned
    // search_path: the manifest has them without the schema.
    let prefix = format!("{}.", crate::base::spi_util::ext_schema()?);
    let mut rows: Vec<Entry> =
        rows?.into_iter().map(|(k, n, d)| (k, n.replace(&prefix, ""), d.replace(&prefix, ""))).collect();
    rows.sort();
    Ok(rows)
}

pub fn installed_version() -> AuditResult<String> {
    crate::base::spi_util::read_one::<String>(
        "SELECT (SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'audit_db')",
        &[],
    )?
    .ok_or_else(|| {
        AuditError::object_not_in_prerequisite_state("extension \"audit_db\" is not installed in this database")
            .hint("CREATE EXTENSION audit_db;")
    })
}

/// The manifest of the installed version.
fn installed_manifest() -> AuditResult<Vec<Entry>> {
    let version = installed_version()?;
    let text = MANIFESTS.iter().find(|(v, _)| *v == version).map(|(_, t)| *t).ok_or_else(|| {
        AuditError::object_not_in_prerequisite_state(format!(
            "this audit_db library has no schema manifest for version {version}"
        ))
        .hint("ALTER EXTENSION audit_db UPDATE; to reach a version this library describes.")
    })?;
    manifest::parse(text).map_err(AuditError::internal)
}

/// DEFAULT partitions of the extension's parents that maintenance manages
/// (`default_partition` set in audit_partition_config, issue 19) and that are no
/// longer members: dropped, or created again as a plain partition. Their manifest
/// entries are not expected.
fn released_defaults() -> AuditResult<Vec<String>> {
    let schema = crate::base::spi_util::ext_schema()?;
    let query = format!(
        "SELECT c.relname::text || '_default'
           FROM {schema}.audit_partition_config cfg
           JOIN pg_catalog.pg_class c ON c.oid = cfg.parent::oid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE (pg_catalog.to_jsonb(cfg) OPERATOR(pg_catalog.->>) 'default_partition') IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                               AND d.objid = pg_catalog.to_regclass(pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname || '_default'))
                               AND d.deptype = 'e')"
    );
    Spi::connect(|client| {
        client
            .select(&query, None, &[])?
            .map(|r| r.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(AuditError::from)
}

pub fn verify() -> AuditResult<Vec<Entry>> {
    let released = released_defaults()?;
    let expected: Vec<Entry> = installed_manifest()?
        .into_iter()
        .filter(|e| !released.iter().any(|t| manifest::belongs_to_table(e, t)))
        .collect();
    let mut drifts = manifest::diff(&expected, &snapshot()?);
    drifts.extend(triples(PARTITION_INDEX_SQL)?);
    drifts.extend(triples(PARTITION_TRIGGER_SQL)?);
    Ok(drifts)
}

/// `audit_schema_snapshot()`: see docs/reference.md.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn audit_schema_snapshot() -> TableIterator<
    'static,
    (name!(object_type, String), name!(object_name, String), name!(definition, String)),
> {
    TableIterator::new(snapshot().or_report())
}

/// `audit_verify_schema()`: see docs/reference.md.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn audit_verify_schema() -> TableIterator<
    'static,
    (name!(object_type, String), name!(object_name, String), name!(problem, String)),
> {
    TableIterator::new(verify().or_report())
}

/// Recreates the indexes and primary keys of the extension's partitioned parents that
/// the manifest lists but the catalog lacks, the state a restore leaves them in (see
/// finalize.sql: restoring drops them so that pg_dump's own statements for each
/// partition's indexes do not collide). PostgreSQL attaches the partitions' matching
/// indexes instead of building them again. Returns what it created.
pub fn finish_restore() -> AuditResult<Vec<String>> {
    let expected = installed_manifest()?;
    // The manifest names the extension's objects without their schema.
    let schema = crate::base::spi_util::ext_schema()?;
    let mut created = Vec::new();
    for (kind, name, def) in &expected {
        if kind != "index" || !def.contains(" ON ONLY ") {
            continue;
        }
        let exists = Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.to_regclass($1 OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident($2)) IS NOT NULL",
            &[schema.as_str().into(), name.as_str().into()],
        )?
        .unwrap_or(false);
        if exists {
            continue;
        }
        // A primary key or unique constraint is recreated as the constraint.
        let constraint = expected.iter().find(|(k, n, d)| {
            k == "constraint"
                && n.rsplit_once('.').map(|(_, c)| c == name).unwrap_or(false)
                && (d.starts_with("PRIMARY KEY") || d.starts_with("UNIQUE"))
        });
        let sql = match constraint {
            Some((_, qualified_name, cdef)) => {
                let (table, conname) = qualified_name.rsplit_once('.').unwrap_or(("", ""));
                format!(
                    "ALTER TABLE {schema}.{} ADD CONSTRAINT {} {cdef}",
                    pgrx::spi::quote_identifier(table),
                    pgrx::spi::quote_identifier(conname)
                )
            }
            None => def.replacen(" ON ONLY ", &format!(" ON {schema}."), 1),
        };
        Spi::run(&sql)?;
        created.push(name.clone());
    }
    Ok(created)
}

/// `audit_finish_restore()`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn audit_finish_restore() -> SetOfIterator<'static, String> {
    SetOfIterator::new(finish_restore().or_report())
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn count(query: &str) -> i64 {
        Spi::get_one::<i64>(query).expect("query runs").expect("a count")
    }

    /// pgrx runs the tests concurrently, each in a transaction of its own: a test that
    /// changes an extension table and then reads the whole catalog (pg_get_expr locks
    /// each table it describes) deadlocked with another doing the same in the other
    /// order. Such tests take this lock first, until their transaction ends.
    fn one_catalog_writer_at_a_time() {
        Spi::run("SELECT pg_advisory_xact_lock(hashtext('audit_db tests: catalog writers'))").expect("lock");
    }

    #[pg_test]
    fn fresh_install_matches_its_manifest_and_drift_is_named() {
        one_catalog_writer_at_a_time();
        assert_eq!(count("SELECT count(*) FROM audit_verify_schema()"), 0);
        Spi::run("ALTER TABLE pseudonym_mapping ALTER COLUMN original_id TYPE varchar(10)").expect("alter");
        let problem = Spi::get_one::<String>(
            "SELECT problem FROM audit_verify_schema() WHERE object_name = 'pseudonym_mapping.original_id'",
        )
        .expect("query runs");
        assert_eq!(problem.as_deref(), Some("type differs: expected text, found character varying(10)"));
    }

    #[pg_test]
    fn the_install_records_itself_in_the_journal() {
        assert_eq!(count("SELECT count(*) FROM audit_migrations() WHERE name = 'install'"), 1);
        assert_eq!(
            Spi::get_one::<String>("SELECT audit_schema_version()").expect("runs"),
            Spi::get_one::<String>("SELECT extversion::text FROM pg_extension WHERE extname = 'audit_db'").expect("runs")
        );
    }

    #[pg_test]
    fn finish_restore_puts_back_a_missing_parent_index() {
        one_catalog_writer_at_a_time();
        Spi::run("DROP INDEX error_log_severity_idx").expect("drop");
        assert_eq!(
            Spi::get_one::<String>("SELECT string_agg(x, ',') FROM audit_finish_restore() x").expect("runs"),
            Some("error_log_severity_idx".to_string())
        );
        assert_eq!(count("SELECT count(*) FROM audit_verify_schema()"), 0);
    }
}
