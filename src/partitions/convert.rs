//! `audit_convert_to_partitioned()`: turns a plain audit table (an older install, or the
//! original migration 0000 applied without partitioning) into the partitioned layout,
//! keeping every row, index, grant and sequence value. Everything happens in the
//! caller's transaction: on any error nothing changes.
//!
//! * `attach`: the old table is renamed and attached whole as one partition
//!   `FROM (MINVALUE) TO (<month after its newest row>)`, behind a CHECK constraint
//!   added NOT VALID and then validated, so no row is copied; ATTACH and SET NOT NULL
//!   reuse that constraint instead of scanning again.
//! * `copy`: monthly partitions are created for the whole history and the rows are
//!   copied month by month (one INSERT per month), then the old table is dropped.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::partitions::partition::{create_partition, missing_periods, Parent, PartitionConfig};
use crate::base::regclass::Regclass;
use crate::base::spi_util::{ext_schema, qualified};
use audit_db_core::calendar::Date;
use audit_db_core::partition::{bound_literal, month_after, months_between, plan, with_suffix, PartitionInterval};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Attach,
    Copy,
}

impl Mode {
    fn parse(text: &str) -> AuditResult<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "attach" => Ok(Mode::Attach),
            "copy" => Ok(Mode::Copy),
            _ => Err(AuditError::invalid_parameter(format!("unknown conversion mode \"{text}\""))
                .hint("Use 'attach' (no row copy) or 'copy' (re-split into monthly partitions).")),
        }
    }
}

struct Table {
    schema: String,
    name: String,
    owner: String,
    columns: String,
}

fn one_row<T: FromDatum + IntoDatum>(query: &str, args: &[pgrx::datum::DatumWithOid]) -> AuditResult<Option<T>> {
    Ok(Spi::get_one_with_args::<T>(query, args)?)
}

fn strings(query: &str, args: &[pgrx::datum::DatumWithOid]) -> AuditResult<Vec<String>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(query, None, args)? {
            out.push(r.get::<String>(1)?.unwrap_or_default());
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .map_err(AuditError::from)
}

fn load_table(rel: Regclass, key: &str) -> AuditResult<Table> {
    let row = Spi::connect(|client| {
        let mut out = None;
        for r in client.select(
            "SELECT c.relkind::text, c.relispartition, n.nspname::text, c.relname::text,
                    pg_catalog.pg_get_userbyid(c.relowner)::text,
                    (SELECT a.atttypid = 'pg_catalog.timestamptz'::regtype FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped),
                    (SELECT string_agg(pg_catalog.quote_ident(x.attname), ', ' ORDER BY x.attnum)
                       FROM pg_catalog.pg_attribute x
                      WHERE x.attrelid = c.oid AND x.attnum > 0 AND NOT x.attisdropped),
                    pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE')
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $1",
            Some(1),
            &[rel.into(), key.into()],
        )? {
            out = Some((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<bool>(2)?.unwrap_or(false),
                r.get::<String>(3)?.unwrap_or_default(),
                r.get::<String>(4)?.unwrap_or_default(),
                r.get::<String>(5)?.unwrap_or_default(),
                r.get::<bool>(6)?,
                r.get::<String>(7)?.unwrap_or_default(),
                r.get::<bool>(8)?.unwrap_or(false),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    let Some((kind, is_partition, schema, name, owner, key_is_tstz, columns, owns)) = row else {
        return Err(AuditError::invalid_parameter(format!("relation with OID {} does not exist", rel.0.to_u32())));
    };
    if kind == "p" {
        return Err(AuditError::wrong_object_type(format!("\"{name}\" is already partitioned"))
            .hint("Nothing to convert; manage it with audit_create_partitions()."));
    }
    if kind != "r" || is_partition {
        return Err(AuditError::wrong_object_type(format!("\"{name}\" is not a plain table"))
            .hint("audit_convert_to_partitioned() converts an ordinary, non-partition table."));
    }
    match key_is_tstz {
        None => {
            return Err(AuditError::undefined_column(format!("\"{name}\" has no column \"{key}\""))
                .hint("Name the timestamptz column to partition by with key_column."))
        }
        Some(false) => {
            return Err(AuditError::datatype_mismatch(format!(
                "column \"{key}\" of \"{name}\" is not timestamp with time zone"
            ))
            .hint("Partitions are bounded by UTC month starts; convert the column to timestamptz first."))
        }
        Some(true) => {}
    }
    if !owns {
        return Err(AuditError::insufficient_privilege(format!("must be owner of table \"{name}\""))
            .hint("Run the conversion as the table's owner or a superuser."));
    }
    Ok(Table { schema, name, owner, columns })
}

/// Objects that would silently keep pointing at the old table (now a partition, or
/// dropped): refuse rather than break them.
fn check_dependents(rel: Regclass, name: &str) -> AuditResult<()> {
    let deps = strings(
        "SELECT 'view ' || v.oid::regclass::text
           FROM pg_catalog.pg_depend d
           JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid AND d.classid = 'pg_catalog.pg_rewrite'::regclass
           JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
          WHERE d.refobjid = $1 AND v.oid <> $1
         UNION
         SELECT 'foreign key ' || conname || ' on ' || conrelid::regclass::text
           FROM pg_catalog.pg_constraint WHERE contype = 'f' AND confrelid = $1
         UNION
         SELECT 'publication ' || p.pubname FROM pg_catalog.pg_publication_rel r
           JOIN pg_catalog.pg_publication p ON p.oid = r.prpubid WHERE r.prrelid = $1
         UNION
         SELECT 'trigger ' || tgname FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal
         UNION
         SELECT 'row level security' FROM pg_catalog.pg_class WHERE oid = $1 AND relrowsecurity
         UNION
         SELECT 'identity column ' || attname FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attidentity <> '' AND NOT attisdropped
         UNION
         SELECT 'exclusion constraint ' || conname FROM pg_catalog.pg_constraint
          WHERE conrelid = $1 AND contype = 'x'
         UNION
         SELECT 'extension ' || e.extname FROM pg_catalog.pg_depend d
           JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = $1 AND d.deptype = 'e'
         ORDER BY 1",
        &[rel.into()],
    )?;
    if deps.is_empty() {
        return Ok(());
    }
    Err(AuditError::new_dependents(format!(
        "cannot convert \"{name}\": other objects depend on it"
    ))
    .detail(deps.join("; "))
    .hint("Drop these objects (or remove the table from them), convert, then recreate them on the partitioned table."))
}

fn utc_date_of(ts_sql: &str, args: &[pgrx::datum::DatumWithOid]) -> AuditResult<Option<Date>> {
    Ok(one_row::<i32>(
        &format!("SELECT ((({ts_sql}) AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"),
        args,
    )?
    .map(|d| Date::from_days(i64::from(d))))
}

pub fn convert(rel: Regclass, mode: Mode, key: &str) -> AuditResult<String> {
    let t = load_table(rel, key)?;
    check_dependents(rel, &t.name)?;
    let old = qualified(&t.schema, &t.name);
    let qkey = quote_identifier(key);
    Spi::run(&format!("LOCK TABLE {old} IN ACCESS EXCLUSIVE MODE"))?;
    let rows_before = one_row::<i64>(&format!("SELECT count(*) FROM {old}"), &[])?.unwrap_or(0);
    let nulls = one_row::<i64>(&format!("SELECT count(*) FROM {old} WHERE {qkey} IS NULL"), &[])?
        .unwrap_or(0);
    if nulls > 0 {
        return Err(AuditError::new_not_null(format!(
            "{nulls} rows of \"{}\" have a NULL \"{key}\"",
            t.name
        ))
        .hint("Every row needs a timestamp to be placed in a partition; fix or delete those rows first."));
    }

    // 1. Move the old table and its indexes out of the way.
    let renamed = with_suffix(&t.name, if mode == Mode::Attach { "_legacy" } else { "_old" });
    if one_row::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                          ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
        &[t.schema.as_str().into(), renamed.as_str().into()],
    )?
    .unwrap_or(false)
    {
        return Err(AuditError::duplicate_table(format!("relation \"{renamed}\" already exists"))
            .hint("Rename or drop it; the conversion needs that name for the old table."));
    }
    // Index definitions, captured before renaming so they name the original table.
    let indexes: Vec<(String, String, bool, bool, Option<String>)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            "SELECT i.relname::text, pg_catalog.pg_get_indexdef(x.indexrelid),
                    x.indisunique, x.indisprimary,
                    (SELECT c.conname::text FROM pg_catalog.pg_constraint c WHERE c.conindid = x.indexrelid
                        AND c.conrelid = x.indrelid),
                    EXISTS (SELECT 1 FROM unnest(x.indkey) k
                             JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k
                            WHERE a.attname = $2)
               FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
              WHERE x.indrelid = $1 ORDER BY i.relname",
            None,
            &[rel.into(), key.into()],
        )? {
            let has_key = r.get::<bool>(6)?.unwrap_or(false);
            out.push((
                r.get::<String>(1)?.unwrap_or_default(),
                r.get::<String>(2)?.unwrap_or_default(),
                r.get::<bool>(3)?.unwrap_or(false) && !has_key,
                r.get::<bool>(4)?.unwrap_or(false),
                r.get::<String>(5)?,
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    let pk_columns: Option<Vec<String>> = {
        let cols = strings(
            "SELECT a.attname::text FROM pg_catalog.pg_index x
               CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
              WHERE x.indrelid = $1 AND x.indisprimary ORDER BY k.ord",
            &[rel.into()],
        )?;
        if cols.is_empty() { None } else { Some(cols) }
    };
    Spi::run(&format!("ALTER TABLE {old} RENAME TO {}", quote_identifier(&renamed)))?;
    let moved = qualified(&t.schema, &renamed);
    // The old primary key's new name (renaming an index renames its constraint).
    let mut old_pk: Option<String> = None;
    for (i, (index_name, _, _, primary, _)) in indexes.iter().enumerate() {
        let new_name = with_suffix(index_name, &format!("_{}{i}", if mode == Mode::Attach { "l" } else { "o" }));
        Spi::run(&format!(
            "ALTER INDEX {} RENAME TO {}",
            qualified(&t.schema, index_name),
            quote_identifier(&new_name)
        ))?;
        if *primary {
            old_pk = Some(new_name);
        }
    }

    // 2. The new partitioned parent, under the original name.
    Spi::run(&format!(
        "CREATE TABLE {old} (LIKE {moved} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE
                             INCLUDING COMPRESSION INCLUDING COMMENTS INCLUDING GENERATED)
         PARTITION BY RANGE ({qkey})"
    ))?;
    let mut notes = Vec::new();
    // The primary key as the parent has it (widened by the partition key if needed).
    let mut new_pk: Option<(String, Vec<String>)> = None;
    if let Some(cols) = &pk_columns {
        let pk_name = indexes
            .iter()
            .find(|i| i.3)
            .and_then(|i| i.4.clone())
            .unwrap_or_else(|| with_suffix(&t.name, "_pkey"));
        let mut cols: Vec<String> = cols.iter().map(quote_identifier).collect();
        if !pk_columns.as_ref().map(|c| c.iter().any(|c| c == key)).unwrap_or(false) {
            cols.push(qkey.clone());
            notes.push(format!("primary key widened to ({})", cols.join(", ")));
        }
        Spi::run(&format!(
            "ALTER TABLE {old} ADD CONSTRAINT {} PRIMARY KEY ({})",
            quote_identifier(&pk_name),
            cols.join(", ")
        ))?;
        if notes.iter().any(|n| n.starts_with("primary key widened")) {
            new_pk = Some((pk_name, cols));
        }
    }
    for (index_name, def, unique_without_key, primary, _) in &indexes {
        if *primary {
            continue;
        }
        if *unique_without_key {
            notes.push(format!(
                "unique index {index_name} does not contain \"{key}\" and stays on the old rows only"
            ));
            continue;
        }
        // The captured definition names the original table, which is now the parent.
        Spi::run(def)?;
    }
    // Sequences owned by the old table's columns now belong to the parent.
    for (seq, col) in Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            "SELECT d.objid::regclass::text, a.attname::text FROM pg_catalog.pg_depend d
               JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
               JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
              WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = $1 AND d.deptype = 'a'",
            None,
            &[rel.into()],
        )? {
            out.push((r.get::<String>(1)?.unwrap_or_default(), r.get::<String>(2)?.unwrap_or_default()));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })? {
        Spi::run(&format!("ALTER SEQUENCE {seq} OWNED BY {old}.{}", quote_identifier(&col)))?;
    }
    // Grants and owner, as the old table had them.
    for grant in strings(
        "SELECT format('GRANT %s ON %s TO %s%s', a.privilege_type, $2,
                       CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
                       CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
           FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
          WHERE c.oid = $1 AND a.grantee <> c.relowner",
        &[rel.into(), old.as_str().into()],
    )? {
        Spi::run(&grant)?;
    }
    Spi::run(&format!("ALTER TABLE {old} OWNER TO {}", quote_identifier(&t.owner)))?;
    if let Some(comment) =
        one_row::<String>("SELECT pg_catalog.obj_description($1, 'pg_class')", &[rel.into()])?
    {
        Spi::run(&format!("COMMENT ON TABLE {old} IS {}", pgrx::spi::quote_literal(&comment)))?;
    }
    let default_name = with_suffix(&t.name, "_default");
    Spi::run(&format!(
        "CREATE TABLE {} PARTITION OF {old} DEFAULT",
        qualified(&t.schema, &default_name)
    ))?;
    Spi::run(&format!("ALTER TABLE {} OWNER TO {}", qualified(&t.schema, &default_name), quote_identifier(&t.owner)))?;

    let new_rel = Regclass(one_row::<pg_sys::Oid>("SELECT $1::regclass::oid", &[old.as_str().into()])?
        .ok_or_else(|| AuditError::internal("new parent vanished"))?);
    let parent = Parent::load(new_rel)?;
    let config = PartitionConfig::load(new_rel.0)?;
    let today = crate::partitions::partition::utc_date(None)?;

    let summary = match mode {
        Mode::Attach => {
            let newest = utc_date_of(&format!("SELECT max({qkey}) FROM {moved}"), &[])?;
            // The legacy partition covers everything up to the month after its newest row,
            // and at least up to the current month's start (an empty or old table leaves
            // the current month to a fresh partition).
            let previous_month = today.add_months_to_first(-1);
            let upper = month_after(newest.unwrap_or(previous_month).max(previous_month));
            let upper_lit = bound_literal(upper);
            Spi::run(&format!(
                "ALTER TABLE {moved} ADD CONSTRAINT audit_db_bound
                   CHECK ({qkey} IS NOT NULL AND {qkey} < '{upper_lit}'::timestamptz) NOT VALID"
            ))?;
            Spi::run(&format!("ALTER TABLE {moved} VALIDATE CONSTRAINT audit_db_bound"))?;
            Spi::run(&format!("ALTER TABLE {moved} ALTER COLUMN {qkey} SET NOT NULL"))?;
            // A partition has the parent's primary key: swap the old one for the widened
            // one (one index build; the rows stay where they are).
            if let (Some((_, cols)), Some(old_pk)) = (&new_pk, &old_pk) {
                let index = with_suffix(&renamed, "_pkey");
                Spi::run(&format!(
                    "CREATE UNIQUE INDEX {} ON {moved} ({})",
                    quote_identifier(&index),
                    cols.join(", ")
                ))?;
                Spi::run(&format!(
                    "ALTER TABLE {moved} DROP CONSTRAINT {}, ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}",
                    quote_identifier(old_pk),
                    quote_identifier(&index),
                    quote_identifier(&index)
                ))?;
            }
            Spi::run(&format!(
                "ALTER TABLE {old} ATTACH PARTITION {moved} FOR VALUES FROM (MINVALUE) TO ('{upper_lit}')"
            ))?;
            Spi::run(&format!("ALTER TABLE {moved} DROP CONSTRAINT audit_db_bound"))?;
            let created = missing_periods(&parent, PartitionInterval::Monthly, config.premake, None)?;
            for p in &created {
                create_partition(&parent, p)?;
            }
            format!(
                "attached {rows_before} rows as partition {renamed} FROM (MINVALUE) TO ('{upper_lit}'); created {} partitions",
                created.len()
            )
        }
        Mode::Copy => {
            let oldest = utc_date_of(&format!("SELECT min({qkey}) FROM {moved}"), &[])?.unwrap_or(today);
            let newest = utc_date_of(&format!("SELECT max({qkey}) FROM {moved}"), &[])?.unwrap_or(today);
            let last = newest.max(today.add_months_to_first(i64::from(config.premake)));
            let span = months_between(oldest, last);
            let periods = plan(&t.name, PartitionInterval::Monthly, oldest, span).map_err(|e| {
                AuditError::invalid_parameter(e.to_string())
                    .hint("The history spans too many months for copy mode; use attach mode.")
            })?;
            let cols = &t.columns;
            let mut copied = 0i64;
            for p in &periods {
                create_partition(&parent, p)?;
                copied += Spi::connect_mut(|client| {
                    client
                        .update(
                            &format!(
                                "INSERT INTO {} ({cols}) SELECT {cols} FROM {moved}
                                  WHERE {qkey} >= '{}'::timestamptz AND {qkey} < '{}'::timestamptz",
                                qualified(&t.schema, &p.name),
                                p.from_literal(),
                                p.to_literal()
                            ),
                            None,
                            &[],
                        )
                        .map(|r| r.len() as i64)
                })?;
            }
            if copied != rows_before {
                return Err(AuditError::internal(format!(
                    "copied {copied} rows but the table had {rows_before}; nothing was changed"
                )));
            }
            Spi::run(&format!("DROP TABLE {moved}"))?;
            format!("copied {rows_before} rows into {} monthly partitions", periods.len())
        }
    };
    let rows_after = one_row::<i64>(&format!("SELECT count(*) FROM {old}"), &[])?.unwrap_or(-1);
    if rows_after != rows_before {
        return Err(AuditError::internal(format!(
            "row count changed from {rows_before} to {rows_after}; nothing was changed"
        )));
    }
    Spi::run_with_args(
        &format!(
            "INSERT INTO {}.audit_partition_config (parent) VALUES ($1) ON CONFLICT (parent) DO NOTHING",
            ext_schema()?
        ),
        &[new_rel.into()],
    )?;
    let mut out = format!("{}: {summary}", t.name);
    for n in notes {
        out.push_str("; ");
        out.push_str(&n);
    }
    Ok(out)
}

/// `audit_convert_to_partitioned(tbl, mode, key_column)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe)]
fn audit_convert_to_partitioned(
    tbl: default!(Option<Regclass>, "'audit_log'"),
    mode: default!(Option<&str>, "'attach'"),
    key_column: default!(Option<&str>, "'timestamp'"),
) -> String {
    let tbl = tbl.ok_or_else(|| AuditError::null_argument("tbl")).or_report();
    let mode = Mode::parse(mode.ok_or_else(|| AuditError::null_argument("mode")).or_report()).or_report();
    let key = key_column.ok_or_else(|| AuditError::null_argument("key_column")).or_report();
    convert(tbl, mode, key).or_report()
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn attach_keeps_rows_ids_and_sequence() {
        Spi::run(
            "CREATE TABLE legacy (id serial PRIMARY KEY, \"timestamp\" timestamptz NOT NULL, v text);
             INSERT INTO legacy (\"timestamp\", v)
             SELECT '2023-05-01'::timestamptz + i * interval '1 hour', 'x' FROM generate_series(1, 500) i",
        )
        .expect("setup");
        let out = Spi::get_one::<String>("SELECT audit_convert_to_partitioned('legacy', 'attach')")
            .expect("converts")
            .expect("text");
        assert!(out.starts_with("legacy: attached 500 rows as partition legacy_legacy"), "{out}");
        assert_eq!(
            Spi::get_one::<String>("SELECT relkind::text FROM pg_class WHERE oid = 'legacy'::regclass").unwrap(),
            Some("p".to_string())
        );
        assert_eq!(Spi::get_one::<i64>("SELECT sum(id) FROM legacy").unwrap(), Some(125250));
        assert_eq!(
            Spi::get_one::<i32>("INSERT INTO legacy (\"timestamp\", v) VALUES (now(), 'new') RETURNING id").unwrap(),
            Some(501)
        );
    }

    #[pg_test(error = "unknown conversion mode \"merge\"")]
    fn unknown_mode_is_refused() {
        Spi::run("CREATE TABLE legacy2 (id int, \"timestamp\" timestamptz)").expect("setup");
        Spi::run("SELECT audit_convert_to_partitioned('legacy2', 'merge')").expect("refused");
    }
}
