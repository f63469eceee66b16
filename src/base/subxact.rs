//! Running a piece of work in a subtransaction, the way a PL/pgSQL `BEGIN ... EXCEPTION`
//! block does: on error its changes are rolled back, the error is returned as a value,
//! and the outer transaction carries on. Maintenance uses it so that a partition it
//! cannot lock in time is skipped and reported instead of failing the whole run.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;
use std::panic::AssertUnwindSafe;

/// An error caught inside a subtransaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caught {
    /// Five-character SQLSTATE, e.g. `55P03`.
    pub sqlstate: String,
    pub message: String,
}

impl Caught {
    pub fn is_lock_timeout(&self) -> bool {
        self.sqlstate == "55P03"
    }

    /// `query_canceled`: a cancel request or `statement_timeout`.
    pub fn is_cancel(&self) -> bool {
        self.sqlstate == "57014"
    }
}

/// Decodes PostgreSQL's MAKE_SQLSTATE packing (6 bits per character) into text.
pub fn sqlstate_text(code: i32) -> String {
    (0..5)
        .map(|i| char::from((((code >> (6 * i)) & 0x3F) as u8) + b'0'))
        .collect()
}

/// Runs `f` in a subtransaction; commits it on success, rolls it back on error.
///
/// A cancel (`pg_cancel_backend`, `statement_timeout`: SQLSTATE 57014) is never turned
/// into a value: like PL/pgSQL's `EXCEPTION WHEN OTHERS`, which does not catch
/// `query_canceled`, the subtransaction is rolled back and the cancel raised again, so
/// the whole statement stops as the user asked.
pub fn try_in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    in_subtransaction(move || Ok(f()))
}

/// As `try_in_subtransaction`, for work that reports a failure it caught itself (an
/// `Err`): that rolls the subtransaction back too, undoing what came before it.
pub fn in_subtransaction<R>(f: impl FnOnce() -> Result<R, Caught>) -> Result<R, Caught> {
    // SAFETY: plain reads of backend globals, restored below.
    let (old_context, old_owner) =
        unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: a subtransaction begun here is released or rolled back below, whatever f does.
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_context);
    }
    let outcome = PgTryBuilder::new(AssertUnwindSafe(move || Ok(f())))
        .catch_others(|e| {
            let report = match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
                CaughtError::RustPanic { ereport, .. } => ereport,
            };
            let caught = Caught {
                sqlstate: sqlstate_text(report.sql_error_code() as i32),
                message: report.message().to_string(),
            };
            Err((caught, e))
        })
        .execute();
    // SAFETY: ends the subtransaction begun above; restores the memory context and
    // resource owner the caller had.
    unsafe {
        if matches!(outcome, Ok(Ok(_))) {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(old_context);
        pg_sys::CurrentResourceOwner = old_owner;
    }
    match outcome {
        Ok(r) => r,
        Err((caught, e)) if caught.is_cancel() => e.rethrow(),
        Err((caught, _)) => Err(caught),
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn sqlstate_decoding() {
        assert_eq!(
            sqlstate_text(pgrx::PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE as i32),
            "55P03"
        );
        assert_eq!(
            sqlstate_text(pgrx::PgSqlErrorCode::ERRCODE_DIVISION_BY_ZERO as i32),
            "22012"
        );
    }

    #[pg_test]
    fn failed_work_is_rolled_back_and_the_transaction_goes_on() {
        Spi::run("CREATE TEMP TABLE subxact_t (x int)").unwrap();
        let ok = try_in_subtransaction(|| Spi::run("INSERT INTO subxact_t VALUES (1)"));
        assert!(matches!(ok, Ok(Ok(()))));
        let failed = try_in_subtransaction(|| {
            Spi::run("INSERT INTO subxact_t VALUES (2)").unwrap();
            Spi::run("SELECT 1/0").unwrap();
        });
        assert_eq!(failed.unwrap_err().sqlstate, "22012");
        assert_eq!(
            Spi::get_one::<i64>("SELECT sum(x) FROM subxact_t").unwrap(),
            Some(1)
        );
    }
}
