//! Small SPI helpers shared by every module.

use crate::base::error::{AuditError, AuditResult};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// `schema.name`, each part quoted as an identifier.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_identifier(schema), quote_identifier(name))
}

/// The first column of the first row of a read-only query. pgrx's `Spi::get_one*`
/// run through `connect_mut`, which assigns a transaction id first: on a hot standby
/// that is an ERROR ("cannot assign TransactionIds during recovery"). Every read that
/// a standby may run (verification, the digest, maintenance's and sealing's no-ops)
/// goes through here.
pub fn read_one<T: FromDatum + IntoDatum>(query: &str, args: &[pgrx::datum::DatumWithOid]) -> AuditResult<Option<T>> {
    Ok(Spi::connect(|client| client.select(query, Some(1), args)?.first().get_one::<T>())?)
}

/// True on a hot standby (a plain read of the server's state, no SPI).
pub fn in_recovery() -> bool {
    // SAFETY: reads shared recovery state.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// True where this transaction cannot write: a hot standby, or a read-only
/// transaction on a primary (`default_transaction_read_only`, `BEGIN READ ONLY`).
pub fn read_only() -> bool {
    // SAFETY: reads a backend global, set for the current transaction.
    in_recovery() || unsafe { pg_sys::XactReadOnly }
}

/// The extension's schema, quoted. Kept until the next relcache invalidation (as the
/// extension's OID is): ALTER EXTENSION SET SCHEMA moves its tables, which invalidates.
pub fn ext_schema() -> AuditResult<String> {
    let oid = ext_oid();
    if let Some(schema) = SCHEMA.with(|c| c.borrow().as_ref().filter(|(o, _)| *o == oid).map(|(_, s)| s.clone())) {
        return Ok(schema);
    }
    // The scalar subquery always yields one row: NULL when the extension is absent.
    let schema = read_one::<String>(
        "SELECT (SELECT n.nspname::text FROM pg_catalog.pg_extension e
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
                  WHERE e.extname OPERATOR(pg_catalog.=) 'audit_db')",
        &[],
    )?;
    match schema {
        Some(s) => {
            let quoted = quote_identifier(s);
            if oid != pg_sys::InvalidOid {
                SCHEMA.with(|c| *c.borrow_mut() = Some((oid, quoted.clone())));
            }
            Ok(quoted)
        }
        // Inside CREATE EXTENSION the pg_extension row exists already; outside, the
        // extension must be installed for its tables to be there.
        None => Err(AuditError::object_not_in_prerequisite_state(
            "extension \"audit_db\" is not installed in this database",
        )
        .hint("Run CREATE EXTENSION audit_db first.")),
    }
}

/// `sql` with every `@extschema@` replaced by the extension's schema, quoted, as in
/// the extension's own scripts: the one way audit_db's statements name its objects.
/// Every audit_db function runs with `search_path = pg_catalog, pg_temp`, so no name
/// and no operator resolves in a schema a user can create objects in (issue 25: an
/// operator planted in the extension's schema ran as the superuser).
pub fn q(sql: &str) -> AuditResult<String> {
    Ok(sql.replace("@extschema@", &ext_schema()?))
}

/// Runs `f` on a snapshot taken now (READ COMMITTED: a new one), for reads that must
/// see rows committed after the statement began: after waiting for writers, after
/// taking a lock. pgrx runs SPI read-only, on the active snapshot, until the
/// transaction has an xid; this pushes the fresh snapshot that read then uses.
pub fn with_fresh_snapshot<R>(f: impl FnOnce() -> AuditResult<R>) -> AuditResult<R> {
    // SAFETY: balanced with the PopActiveSnapshot below; an error aborts the
    // transaction, which resets the snapshot stack.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let out = f();
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    out
}

thread_local! {
    /// The extension's OID as last looked up; cleared by any relcache invalidation.
    static EXT_OID: std::cell::Cell<Option<pg_sys::Oid>> = const { std::cell::Cell::new(None) };
    static CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The extension's schema, quoted, for the OID it was looked up under.
    static SCHEMA: std::cell::RefCell<Option<(pg_sys::Oid, String)>> = const { std::cell::RefCell::new(None) };
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_ext_oid(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    EXT_OID.with(|c| c.set(None));
    SCHEMA.with(|c| *c.borrow_mut() = None);
}

/// The extension's OID; InvalidOid when it is absent. `get_extension_oid` is an index
/// scan of pg_extension (no syscache in PostgreSQL 15), and the insert trigger needs the
/// OID for every row: it is kept until the next relcache invalidation. DROP or CREATE
/// EXTENSION drops or creates audit_db's tables, which invalidates, so a stale OID
/// cannot outlive the extension it names.
pub fn ext_oid() -> pg_sys::Oid {
    if let Some(oid) = EXT_OID.with(|c| c.get()) {
        return oid;
    }
    if !CALLBACK.with(|c| c.replace(true)) {
        // SAFETY: registers a callback for the life of this backend (once).
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_ext_oid), pg_sys::Datum::from(0)) };
    }
    // SAFETY: a catalog lookup by name, missing_ok.
    let oid = unsafe { pg_sys::get_extension_oid(c"audit_db".as_ptr(), true) };
    if oid != pg_sys::InvalidOid {
        EXT_OID.with(|c| c.set(Some(oid)));
    }
    oid
}

/// The extension's owner, as whom audit_db's internal statements run.
pub fn ext_owner() -> AuditResult<pg_sys::Oid> {
    read_one::<pg_sys::Oid>("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'audit_db'", &[])?
        .ok_or_else(|| AuditError::object_not_in_prerequisite_state("extension \"audit_db\" is not installed"))
}

/// The session's `lock_timeout` setting, as text.
pub fn lock_timeout() -> AuditResult<String> {
    Ok(read_one::<String>("SELECT pg_catalog.current_setting('lock_timeout')", &[])?.unwrap_or_default())
}

/// Sets `lock_timeout` for the rest of the transaction (a value as `SET` takes it).
pub fn set_lock_timeout(value: &str) -> AuditResult<()> {
    Spi::run_with_args("SELECT pg_catalog.set_config('lock_timeout', $1, true)", &[value.into()])?;
    Ok(())
}
