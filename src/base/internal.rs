//! Backend-local marker for writes that audit_db itself makes to `audit_log` (GDPR
//! rewrites, classification retention, moving rows out of the DEFAULT partition).
//! The append-only trigger lets exactly these through. It lives in this backend's
//! memory only: no SQL statement, setting or role can turn it on.

use std::cell::Cell;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Set while an audit_db function rewrites or deletes audit_log rows.
pub fn active() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Marks internal writes until dropped (also when an error unwinds).
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

pub fn guard() -> Guard {
    DEPTH.with(|d| d.set(d.get() + 1));
    Guard
}

/// Runs `f` as an internal write; the marker is cleared on return and on error.
pub fn internal<R>(f: impl FnOnce() -> R) -> R {
    let _guard = guard();
    f()
}
