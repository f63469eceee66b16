//! Whether this session is a restore: the one rule for it in Rust.
//!
//! pg_dump's scripts and pg_restore set `row_security = off` before they load data. A
//! superuser session with that setting is taken for a restore: the rows come from a
//! table where they were unique and carried their evidence, so the insert triggers
//! trust their ids and legacy chain links instead of checking each. This is no weaker
//! than the rest: a superuser can switch the triggers off outright
//! (`session_replication_role`). A 0.6.0 row brought back keeps its evidence only if
//! it checks under this server's key ring (`evidence::seal`), whoever restores it.
//! (The install script has its own test, in SQL: sql/finalize.sql also accepts
//! `audit_db.restoring = on` before any row exists.)

use pgrx::pg_sys;

/// The session user is a superuser (not the current user: a SECURITY DEFINER function
/// owned by one does not make its caller one).
pub fn superuser_session() -> bool {
    // SAFETY: reads backend state; GetSessionUserId is valid in any transaction.
    unsafe { pg_sys::superuser_arg(pg_sys::GetSessionUserId()) }
}

/// A superuser session with `row_security = off`, as pg_dump's scripts and pg_restore run.
pub fn restoring() -> bool {
    superuser_session() && row_security_off()
}

fn row_security_off() -> bool {
    // SAFETY: reads a GUC value by name; NULL when unknown (missing_ok); the string is
    // PostgreSQL's, valid until the setting changes, and read at once.
    unsafe {
        let v = pg_sys::GetConfigOption(c"row_security".as_ptr(), true, false);
        !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"off"
    }
}
