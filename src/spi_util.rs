//! Small SPI helpers shared by every module.

use crate::error::{AuditError, AuditResult};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// `schema.name`, each part quoted as an identifier.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_identifier(schema), quote_identifier(name))
}

/// The extension's schema, quoted, for calling its own SQL functions whatever the
/// caller's search_path.
pub fn ext_schema() -> AuditResult<String> {
    // The scalar subquery always yields one row: NULL when the extension is absent.
    let schema = Spi::get_one::<String>(
        "SELECT (SELECT n.nspname::text FROM pg_catalog.pg_extension e
                   JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname = 'audit_db')",
    )?;
    match schema {
        Some(s) => Ok(quote_identifier(s)),
        // Inside CREATE EXTENSION the pg_extension row exists already; outside, the
        // extension must be installed for its tables to be there.
        None => Err(AuditError::object_not_in_prerequisite_state(
            "extension \"audit_db\" is not installed in this database",
        )
        .hint("Run CREATE EXTENSION audit_db first.")),
    }
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
