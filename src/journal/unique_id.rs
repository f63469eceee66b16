//! Unique event ids on the partitioned audit_log (issue 14). The original refused a
//! duplicate `id` through its single-column primary key; a partitioned table's unique
//! indexes must include the partition key, so `PRIMARY KEY (id, "timestamp")` alone
//! would accept the same id twice at two times.
//!
//! Ids drawn from the sequence are unique by construction, and cost nothing more:
//! the column's default is `audit_log_next_id()`, which draws from
//! `audit_log_id_seq` and remembers the value in this backend; the insert trigger
//! (`check`) recognises it. Only an id the inserting statement supplied itself is
//! checked: under one advisory transaction lock (explicit ids are serialised with
//! each other; default ids never wait), it is looked up across the partitions (one
//! probe of each partition's primary key index) and refused with 23505 if present.
//!
//! An explicit id past the sequence's last value would be handed out again by a later
//! default. Moving the sequence past it is not transactional (a rolled-back insert of
//! 2^63-1 would exhaust the sequence for everyone, issue 25), so only a superuser
//! (the inserting role) may do that; anyone else gets 22023 and keeps the sequence where it was.
//!
//! A restore (a superuser session with row_security off) is trusted: see `base::restore`.
//!
//! Limit (docs/migrating.md): an explicit id below the sequence's position that a
//! concurrent, not yet committed transaction drew from the sequence is not seen by
//! the lookup. Applications that leave `id` to its default never meet it.

use crate::base::error::{AuditError, AuditResult, OrReport};
use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    /// The id this backend last drew for audit_log and has not inserted yet.
    static DRAWN: Cell<Option<i64>> = const { Cell::new(None) };
    /// The sequence's OID for the extension installation it was looked up in.
    static SEQUENCE: Cell<(pg_sys::Oid, pg_sys::Oid)> = const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
}

/// Arbitrary first key of the advisory lock that serialises explicit ids.
const LOCK_KEY: &str = "audit_db.audit_log.explicit_id";

fn sequence() -> AuditResult<pg_sys::Oid> {
    let ext = crate::base::spi_util::ext_oid();
    let (for_ext, seq) = SEQUENCE.with(|s| s.get());
    if for_ext == ext && seq != pg_sys::InvalidOid {
        return Ok(seq);
    }
    let name = format!("{}.audit_log_id_seq", crate::base::spi_util::ext_schema()?);
    let seq = Spi::get_one_with_args::<pg_sys::Oid>("SELECT pg_catalog.to_regclass($1)::oid", &[name.as_str().into()])?
        .filter(|o| *o != pg_sys::InvalidOid)
        .ok_or_else(|| {
            AuditError::object_not_in_prerequisite_state("the sequence audit_log_id_seq is missing")
                .hint("Compare the installation with SELECT * FROM audit_verify_schema();")
        })?;
    SEQUENCE.with(|s| s.set((ext, seq)));
    Ok(seq)
}

/// `audit_log_next_id()`: the default of audit_log.id.
#[pg_extern(volatile, parallel_unsafe)]
fn audit_log_next_id() -> i64 {
    let seq = sequence().or_report();
    // nextval checks the caller's USAGE (or UPDATE) on the sequence, as the serial default did.
    // SAFETY: nextval(regclass) called with one non-NULL OID argument.
    let id = unsafe { pgrx::direct_function_call::<i64>(pg_sys::nextval_oid, &[seq.into_datum()]) }
        .expect("nextval returns a value");
    DRAWN.with(|d| d.set(Some(id)));
    id
}

/// Called by the insert trigger for every row it hashes: refuses an explicit id that
/// exists already (23505). `internal`: audit_db's own copy of rows whose ids were
/// unique where they came from (adoption), trusted like a restore.
pub fn check(id: Option<i64>, internal: bool) -> AuditResult<()> {
    let Some(id) = id else { return Ok(()) };
    if DRAWN.with(|d| d.get()) == Some(id) {
        DRAWN.with(|d| d.set(None));
        return Ok(());
    }
    if internal || crate::base::restore::restoring() {
        return Ok(());
    }
    // The lookup must see every committed row; a REPEATABLE READ or SERIALIZABLE
    // snapshot would miss ids committed since it was taken (a duplicate slipped in
    // that way: issue 25's attack tests).
    // SAFETY: reads a backend global.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(AuditError::feature_not_supported(format!(
            "an explicit audit_log id ({id}) needs READ COMMITTED"
        ))
        .detail("Its uniqueness is checked against every committed row, which a transaction snapshot does not show.")
        .hint("Leave id to its default, or insert in a READ COMMITTED transaction."));
    }
    // Who inserts, before the switch below: only a superuser may move the sequence.
    // SAFETY: reads backend state.
    let superuser = unsafe { pg_sys::superuser() };
    let seq = sequence()?;
    let ext = crate::base::spi_util::ext_schema()?;
    // Writers may not read audit_log nor set the sequence: both as the extension owner.
    let _owner = crate::base::owner::UserSwitch::to(crate::base::spi_util::ext_owner()?);
    // Lock order: this advisory lock, then the partitions' ACCESS SHARE (the lookup).
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), 0)",
        &[LOCK_KEY.into()],
    )?;
    let exists = Spi::get_one_with_args::<bool>(
        &format!("SELECT EXISTS (SELECT 1 FROM {ext}.audit_log WHERE id = $1)"),
        &[id.into()],
    )?
    .unwrap_or(false);
    if exists {
        return Err(AuditError::unique_violation("duplicate key value violates unique constraint \"audit_log_pkey\"")
            .detail(format!("Key (id)=({id}) already exists."))
            .hint("audit_log ids are unique across all partitions; leave id to its default."));
    }
    // (A sequence never drawn from has no last value: it would start at or below any id.)
    let last = Spi::get_one_with_args::<i64>("SELECT pg_catalog.pg_sequence_last_value($1::pg_catalog.regclass)", &[seq.into()])?;
    if last.is_some_and(|last| id <= last) {
        return Ok(());
    }
    if !superuser {
        return Err(AuditError::invalid_parameter(format!(
            "audit_log id {id} is past the id sequence's last value ({})",
            last.map_or_else(|| "none".to_string(), |l| l.to_string())
        ))
        .detail("A later default id would collide with it, and moving the sequence for it cannot be rolled back.")
        .hint("Leave id to its default (audit_log_next_id()); only a superuser may insert ids the sequence has not handed out."));
    }
    Spi::run_with_args("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2)", &[seq.into(), id.into()])?;
    Ok(())
}
