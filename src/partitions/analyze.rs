//! `audit_analyze_partitions()`: the original `analyzePartitionPerformance`, in SQL.
//! Totals over the partitions of a parent, and recommendations for what to fix.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::partitions::partition::{Parent, PartitionConfig};
use crate::base::regclass::Regclass;
use crate::base::spi_util::{ext_schema, qualified};
use pgrx::prelude::*;

/// Default size above which a partition is reported: 10 GiB.
pub const DEFAULT_SIZE_THRESHOLD: i64 = 10 * 1024 * 1024 * 1024;

pub struct Analysis {
    pub total_partitions: i32,
    pub total_bytes: i64,
    pub total_rows: i64,
    pub average_partition_bytes: i64,
    pub recommendations: Vec<String>,
}

pub fn analyze(rel: Regclass, size_threshold: i64, at: Option<TimestampWithTimeZone>) -> AuditResult<Analysis> {
    let parent = Parent::load(rel)?;
    // SAFETY: reads backend state (the user that called this SECURITY DEFINER function).
    let caller = unsafe { pg_sys::GetOuterUserId() };
    let may_read = crate::base::spi_util::read_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1, $2, 'SELECT')",
        &[caller.into(), parent.oid.into()],
    )?
    .unwrap_or(false);
    if !may_read {
        return Err(AuditError::insufficient_privilege(format!(
            "permission denied for table {}",
            parent.name
        ))
        .hint("Analysing partitions needs SELECT on the parent (audit_db_reader has it on the audit tables)."));
    }
    if size_threshold <= 0 {
        return Err(AuditError::invalid_parameter("size_threshold must be positive")
            .hint("Pass a size in bytes, for example 10737418240 for 10 GiB."));
    }
    let schema = ext_schema()?;
    let (count, bytes, rows, covering, ahead) = Spi::connect(|client| {
        let t = client.select(
            &format!(
                "SELECT count(*)::int4, coalesce(sum(p.total_bytes), 0)::int8,
                        coalesce(sum(greatest(coalesce(nullif(c.reltuples, -1)::int8,
                                                       pg_catalog.pg_stat_get_live_tuples(c.oid)), 0)), 0)::int8,
                        count(*) FILTER (WHERE NOT p.is_default AND p.range_from <= t.now AND p.range_to > t.now)::int4,
                        count(*) FILTER (WHERE NOT p.is_default AND p.range_from > t.now)::int4
                   FROM {schema}.audit_partitions($1) p
                   JOIN pg_catalog.pg_class c ON c.oid = p.partition
                  CROSS JOIN (SELECT coalesce($2, pg_catalog.now()) AS now) t"
            ),
            Some(1),
            &[rel.into(), at.into()],
        )?;
        let r = t.first();
        Ok::<_, pgrx::spi::Error>((
            r.get::<i32>(1)?.unwrap_or(0),
            r.get::<i64>(2)?.unwrap_or(0),
            r.get::<i64>(3)?.unwrap_or(0),
            r.get::<i32>(4)?.unwrap_or(0),
            r.get::<i32>(5)?.unwrap_or(0),
        ))
    })?;
    let mut recs = Vec::new();
    if covering == 0 {
        recs.push(
            "no partition covers now(): new rows go to the DEFAULT partition; run audit_create_partitions()"
                .to_string(),
        );
    }
    if ahead == 0 {
        recs.push("no partition ahead of now(): run audit_create_partitions() or schedule audit_partition_maintenance()".to_string());
    }
    match &parent.default_partition {
        None => recs.push("no DEFAULT partition: inserts outside every partition's range fail".to_string()),
        Some(d) => {
            // Planning a query on a table runs code its owner chose (an IMMUTABLE
            // function in a statistics or index expression): as that owner (issue 25).
            let _owner = parent.as_owner();
            let n = crate::base::spi_util::read_one::<i64>(
                &format!("SELECT pg_catalog.count(*) FROM ONLY {}", qualified(&parent.schema, d)),
                &[],
            )?
            .unwrap_or(0);
            if n > 0 {
                recs.push(format!(
                    "DEFAULT partition holds {n} rows: create partitions for their ranges (audit_create_partitions with reference_time) to move them"
                ));
            }
        }
    }
    let big: Vec<(String, i64)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            &format!(
                "SELECT p.partition::text, p.total_bytes FROM {schema}.audit_partitions($1) p
                  WHERE p.total_bytes > $2 ORDER BY p.range_from NULLS LAST"
            ),
            None,
            &[rel.into(), size_threshold.into()],
        )? {
            out.push((r.get::<String>(1)?.unwrap_or_default(), r.get::<i64>(2)?.unwrap_or(0)));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;
    // Named as before search_path was pinned: relative to the extension's schema.
    let prefix = format!("{schema}.");
    for (name, size) in big {
        let name = name.strip_prefix(&prefix).unwrap_or(&name);
        recs.push(format!(
            "partition {name} exceeds size threshold ({size} > {size_threshold} bytes): consider a shorter interval"
        ));
    }
    if PartitionConfig::load(parent.oid)?.retention.is_none() {
        recs.push("retention not configured: set audit_partition_config.retention to drop old partitions".to_string());
    }
    Ok(Analysis {
        total_partitions: count,
        total_bytes: bytes,
        total_rows: rows,
        average_partition_bytes: if count > 0 { bytes / i64::from(count) } else { 0 },
        recommendations: recs,
    })
}

/// `audit_analyze_partitions(parent, size_threshold, reference_time)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_analyze_partitions(
    parent: default!(Option<Regclass>, "'audit_log'"),
    size_threshold: default!(Option<i64>, "10737418240"),
    reference_time: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(total_partitions, i32),
        name!(total_bytes, i64),
        name!(total_rows, i64),
        name!(average_partition_bytes, i64),
        name!(recommendations, Vec<String>),
    ),
> {
    let parent = parent.ok_or_else(|| AuditError::null_argument("parent")).or_report();
    let a = analyze(parent, size_threshold.unwrap_or(DEFAULT_SIZE_THRESHOLD), reference_time)
        .or_report();
    TableIterator::once((
        a.total_partitions,
        a.total_bytes,
        a.total_rows,
        a.average_partition_bytes,
        a.recommendations,
    ))
}
