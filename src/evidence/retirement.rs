//! Rows leaving audit_log with a whole partition: the checkpoint written before a
//! partition of audit_log is dropped or detached.

use crate::base::error::AuditResult;
use pgrx::prelude::*;

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
    let (rows, runs) = crate::legacy::integrity::retire(
        &format!("SELECT coalesce(organization_id, '') AS chain_key, chain_seq, chain_hash FROM {part}"),
        vec![],
        &format!("partition {name} {action}"),
    )?;
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
