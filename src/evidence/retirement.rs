//! Rows leaving audit_log, the one way audit_db removes them with their evidence:
//! `delete_rows` for erasure and classification retention, `checkpoint_partition`
//! before a partition is dropped or detached. Either records the legacy chain runs of
//! the rows in `audit_chain_retired` (so the 0.4/0.5 chains still verify) and their
//! 0.6.0 epochs in `audit_seal_retired` (`seal::retiring`, `seal::retire_partition`).
//! The rows are chosen by a `Leaving` (values bound as parameters) or a partition
//! (quoted as an identifier); no caller passes SQL.

use crate::base::error::{AuditError, AuditResult};
use crate::base::spi_util::q;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// Rows of audit_log that audit_db deletes.
pub enum Leaving<'a> {
    /// Erasure: the events of these principals; with `preserve`, not those whose
    /// action is one of `kept_actions`.
    Subject { principals: &'a [String], preserve: bool, kept_actions: &'a [String] },
    /// Classification retention: archived events of `class` older than `days` days.
    Expired { class: &'a str, days: i32 },
}

impl Leaving<'_> {
    /// The condition on audit_log, its values numbered from `$first` (see `values`).
    fn condition(&self, first: usize) -> String {
        let (a, b, c) = (first, first + 1, first + 2);
        match self {
            Leaving::Subject { .. } => format!("principal_id = ANY(${a}) AND (NOT ${b} OR action <> ALL(${c}))"),
            Leaving::Expired { .. } => format!(
                "data_classification = ${a} AND archived_at IS NOT NULL
                    AND \"timestamp\" < pg_catalog.now() - pg_catalog.make_interval(days => ${b})"
            ),
        }
    }

    /// The values of `condition`, in its order.
    fn values(&self) -> Vec<DatumWithOid<'static>> {
        match self {
            Leaving::Subject { principals, preserve, kept_actions } => {
                vec![principals.to_vec().into(), (*preserve).into(), kept_actions.to_vec().into()]
            }
            Leaving::Expired { class, days } => vec![class.to_string().into(), (*days).into()],
        }
    }
}

/// Deletes the rows `leaving` chooses, as audit_db's own write (the caller holds the
/// internal-write marker, and whatever lock keeps new rows of the kind out): first
/// their legacy chain links are retired, then the rows are deleted and their epochs
/// retired, both with `reason`. Returns how many rows were deleted.
pub fn delete_rows(leaving: &Leaving<'_>, reason: &str) -> AuditResult<i64> {
    retire_links(Rows::Leaving(leaving), reason)?;
    crate::evidence::seal::retiring(reason, || {
        Ok(Spi::get_one_with_args::<i64>(
            &q(&format!(
                "WITH d AS (DELETE FROM @extschema@.audit_log WHERE {} RETURNING 1)
                 SELECT pg_catalog.count(*) FROM d",
                leaving.condition(1)
            ))?,
            &leaving.values(),
        )?
        .unwrap_or(0))
    })
}

/// The rows whose chain links `retire_links` records.
enum Rows<'a, 'l> {
    Leaving(&'a Leaving<'l>),
    /// A partition of audit_log, schema-qualified and quoted.
    Partition(&'a str),
}

/// Records the chain runs of rows about to leave audit_log (a dropped or detached
/// partition, erased or expired rows) in `audit_chain_retired`, so verification
/// accepts those gaps, and returns (rows, runs). `$1` is the reason; the values of a
/// `Leaving` follow from `$2`.
fn retire_links(rows: Rows<'_, '_>, reason: &str) -> AuditResult<(i64, i64)> {
    let schema = crate::base::spi_util::ext_schema()?;
    let mut bound: Vec<DatumWithOid> = vec![reason.into()];
    let rows_sql = match rows {
        Rows::Leaving(leaving) => {
            bound.extend(leaving.values());
            q(&format!(
                "SELECT coalesce(organization_id, '') AS chain_key, chain_seq, chain_hash FROM @extschema@.audit_log
                  WHERE {}",
                leaving.condition(2)
            ))?
        }
        Rows::Partition(part) => {
            format!("SELECT coalesce(organization_id, '') AS chain_key, chain_seq, chain_hash FROM {part}")
        }
    };
    let sql = format!(
        "WITH r AS ({rows_sql}),
              islands AS (
                SELECT chain_key, chain_seq, chain_hash,
                       chain_seq - pg_catalog.row_number() OVER (PARTITION BY chain_key ORDER BY chain_seq) AS grp
                  FROM r WHERE chain_seq IS NOT NULL),
              runs AS (
                SELECT chain_key, pg_catalog.min(chain_seq) AS from_seq, pg_catalog.max(chain_seq) AS to_seq,
                       (pg_catalog.array_agg(chain_hash ORDER BY chain_seq DESC))[1] AS last_hash,
                       pg_catalog.count(*) AS n
                  FROM islands GROUP BY chain_key, grp),
              ins AS (
                INSERT INTO {schema}.audit_chain_retired (chain_key, from_seq, to_seq, last_hash, rows, reason)
                SELECT chain_key, from_seq, to_seq, last_hash, n, $1 FROM runs
                ON CONFLICT (chain_key, from_seq) DO NOTHING
                RETURNING rows)
         SELECT coalesce(pg_catalog.sum(rows), 0)::int8, pg_catalog.count(*)::int8 FROM ins"
    );
    Spi::connect_mut(|client| {
        let mut t = client.update(sql.as_str(), Some(1), &bound)?;
        let r = t.next().ok_or(pgrx::spi::Error::InvalidPosition)?;
        Ok::<_, pgrx::spi::Error>((r.get::<i64>(1)?.unwrap_or(0), r.get::<i64>(2)?.unwrap_or(0)))
    })
    .map_err(AuditError::from)
}

/// Before a partition of audit_log is dropped or detached: retire its rows (legacy
/// chain links and 0.6.0 epochs) and write a checkpoint (range, rows, last chain hash
/// per organization) to audit_integrity_log. A no-op for other parents. The partition
/// is bound as a regclass parameter, its name quoted only as an identifier.
pub fn checkpoint_partition(schema: &str, name: &str, action: &str) -> AuditResult<()> {
    let ext = crate::base::spi_util::ext_schema()?;
    let part = crate::base::spi_util::qualified(schema, name);
    let oid = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT h.inhrelid FROM pg_catalog.pg_inherits h
                  WHERE h.inhrelid = pg_catalog.to_regclass($1) AND h.inhparent = pg_catalog.to_regclass($2))",
        &[part.as_str().into(), format!("{ext}.audit_log").into()],
    )?;
    let Some(oid) = oid else { return Ok(()) };
    let (rows, runs) = retire_links(Rows::Partition(&part), &format!("partition {name} {action}"))?;
    let sealed_rows = crate::evidence::seal::retire_partition(oid, &format!("partition {name} {action}"))?;
    let regclass = crate::base::regclass::Regclass(oid);
    Spi::run_with_args(
        &format!(
            "INSERT INTO {ext}.audit_integrity_log (audit_log_id, verification_timestamp, verification_status,
                                                    verification_details, verified_by, hash_verified)
             SELECT 0, pg_catalog.now(), 'CHECKPOINT',
                    pg_catalog.jsonb_build_object(
                        'kind', 'partition ' || $2, 'partition', $1::text, 'rows', $3::int8, 'runs', $4::int8,
                        'sealed_rows', $6::int8,
                        'range', (SELECT pg_catalog.jsonb_build_object('from', p.range_from, 'to', p.range_to)
                                    FROM {ext}.audit_partitions(pg_catalog.to_regclass($7)) p
                                   WHERE p.partition = $5),
                        'chains', (SELECT coalesce(pg_catalog.jsonb_object_agg(k, pg_catalog.jsonb_build_object(
                                              'last_seq', s, 'last_chain_hash', h, 'rows', n)), '{{}}'::jsonb)
                                     FROM (SELECT coalesce(organization_id, '') AS k, pg_catalog.max(chain_seq) AS s,
                                                  (pg_catalog.array_agg(chain_hash ORDER BY chain_seq DESC))[1] AS h,
                                                  pg_catalog.count(*) AS n
                                             FROM {part} WHERE chain_seq IS NOT NULL GROUP BY 1) c)),
                    session_user, NULL"
        ),
        &[name.into(), action.into(), rows.into(), runs.into(), regclass.into(), sealed_rows.into(),
          format!("{ext}.audit_log").into()],
    )?;
    Ok(())
}
