//! audit_log is append-only: the BEFORE UPDATE OR DELETE trigger (which lets only
//! audit_db's own writes through and notes each row audit_db deletes for its seal
//! block), `audit_internal_write()` for the partition guard event triggers, and the
//! TRUNCATE guard on every partition.

use crate::base::error::{AuditError, AuditResult, OrReport};
use pgrx::prelude::*;

/// BEFORE UPDATE OR DELETE on audit_log: append-only, except audit_db's own writes.
#[pg_trigger]
fn audit_log_append_only_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::datum::TryFromDatumError> {
    if !crate::base::internal::active() {
        AuditError::insufficient_privilege("audit_log is append-only")
            .detail("UPDATE and DELETE are refused for every role; rows leave only through retention (audit_drop_expired_partitions) and the GDPR functions.")
            .hint("Use audit_pseudonymize_subject(), audit_delete_subject() or audit_apply_retention_policies().")
            .report();
    }
    if let (None, Some(old)) = (trigger.new(), trigger.old()) {
        // 0.6.0 columns; absent on older schemas (then nothing to note).
        let epoch = old.get_by_name::<i64>("seal_epoch").ok().flatten();
        let hash = old.get_by_name::<String>("row_hash").ok().flatten();
        let signature = old.get_by_name::<String>("signature").ok().flatten();
        crate::evidence::seal::note_deleted(epoch, hash.as_deref(), signature.as_deref());
    }
    Ok(trigger.new().or_else(|| trigger.old()))
}

/// `audit_internal_write()`: true while audit_db itself removes rows or partitions
/// (retention, erasure); the partition guard event triggers let exactly that through.
/// The state lives in backend memory; no statement or setting can turn it on.
#[pg_extern(volatile, parallel_safe)]
fn audit_internal_write() -> bool {
    crate::base::internal::active()
}

/// `audit_log_guard_truncate()`: gives every partition of audit_log that lacks it the
/// statement trigger `audit_log_no_truncate` (statement triggers are not cloned to
/// partitions, so TRUNCATE of one partition would pass the parent's). Created as an
/// internal trigger: pg_dump leaves it out, and a restore's ATTACH recreates it through
/// the event trigger instead of colliding with a dumped copy. PostgreSQL appends the
/// trigger's OID to an internal trigger's name, so it is found by its function
/// (`tgfoid`), never by name. Returns how many it added.
#[pg_extern(volatile, parallel_unsafe)]
fn audit_log_guard_truncate() -> i64 {
    guard_truncate().or_report()
}

fn guard_truncate() -> AuditResult<i64> {
    let ext = crate::base::spi_util::ext_schema()?;
    let (func, parts) = Spi::connect(|client| {
        let func = client
            .select(
                "SELECT pg_catalog.to_regprocedure($1)::oid",
                Some(1),
                &[format!("{ext}.audit_log_no_truncate()").into()],
            )?
            .first()
            .get_one::<pg_sys::Oid>()?
            .unwrap_or(pg_sys::InvalidOid);
        let mut parts = Vec::new();
        for r in client.select(
            "SELECT h.inhrelid FROM pg_catalog.pg_inherits h
              WHERE h.inhparent = pg_catalog.to_regclass($1)
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                                 WHERE t.tgrelid = h.inhrelid AND t.tgfoid = $2)",
            None,
            &[format!("{ext}.audit_log").into(), func.into()],
        )? {
            parts.extend(r.get::<pg_sys::Oid>(1)?);
        }
        Ok::<_, pgrx::spi::Error>((func, parts))
    })?;
    for part in &parts {
        // SAFETY: a zeroed CreateTrigStmt node filled as CREATE TRIGGER would fill it
        // (BEFORE TRUNCATE, FOR EACH STATEMENT, no arguments); relation and function
        // are given by OID, so its relation and funcname fields are not read.
        unsafe {
            let stmt = pgrx::PgBox::<pg_sys::CreateTrigStmt>::alloc_node(pg_sys::NodeTag::T_CreateTrigStmt);
            let stmt = stmt.into_pg();
            (*stmt).trigname = pg_sys::pstrdup(c"audit_log_no_truncate".as_ptr());
            (*stmt).row = false;
            (*stmt).timing = pg_sys::TRIGGER_TYPE_BEFORE as i16;
            (*stmt).events = pg_sys::TRIGGER_TYPE_TRUNCATE as i16;
            pg_sys::CreateTrigger(
                stmt,
                std::ptr::null(),
                *part,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                func,
                pg_sys::InvalidOid,
                std::ptr::null_mut(),
                true,
                false,
            );
            pg_sys::CommandCounterIncrement();
        }
    }
    Ok(parts.len() as i64)
}
