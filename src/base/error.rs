//! Every failure audit_db raises, each mapped to a SQLSTATE with a detail and a hint.
//!
//! Functions build an [`AuditError`] and return it; the thin `#[pg_extern]` layer
//! turns it into a PostgreSQL ERROR with [`AuditError::report`] (via [`OrReport`]).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// A failure with its SQLSTATE, message, detail and hint.
#[derive(Debug, Clone)]
pub struct AuditError {
    pub code: PgSqlErrorCode,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type AuditResult<T> = Result<T, AuditError>;

impl AuditError {
    fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        AuditError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 22004: a required argument was NULL.
    pub fn null_argument(arg: &str) -> Self {
        Self::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("argument \"{arg}\" must not be NULL"),
        )
        .hint(format!(
            "Pass a value for \"{arg}\" or leave it out to use its default."
        ))
    }

    /// 22023: an argument has a value outside what the function accepts.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
    }

    /// 42809: the relation is not of the kind the function works on.
    pub fn wrong_object_type(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, message)
    }

    /// 42501: the caller may not do this to that object.
    pub fn insufficient_privilege(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, message)
    }

    /// 2BP01: other objects depend on the one to change.
    pub fn new_dependents(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST, message)
    }

    /// 23502: rows lack a value the new layout requires.
    pub fn new_not_null(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION, message)
    }

    /// 23505: a value that must be unique exists already.
    pub fn unique_violation(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, message)
    }

    /// 42703: the named column does not exist.
    pub fn undefined_column(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, message)
    }

    /// 42804: a column has a type the operation cannot use.
    pub fn datatype_mismatch(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH, message)
    }

    /// P0002: the thing asked for does not exist (an unknown or forgotten pseudonym).
    pub fn no_data_found(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_NO_DATA_FOUND, message)
    }

    /// 22000: data that fails a check (tampered ciphertext, wrong key).
    pub fn data_exception(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, message)
    }

    /// 42P07: a relation of that name exists and is not what we would create.
    pub fn duplicate_table(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE, message)
    }

    /// 42710: an object of that name exists and is not one audit_db may change.
    pub fn duplicate_object(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, message)
    }

    /// 42622: a generated identifier would be truncated by PostgreSQL.
    /// 22001: a value longer than the column that would hold it.
    pub fn string_data_right_truncation(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION, message)
    }

    pub fn name_too_long(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_NAME_TOO_LONG, message)
    }

    /// 22008 (datetime_field_overflow / datetime_value_out_of_range share the code).
    pub fn datetime_out_of_range(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW, message)
    }

    /// 55000: the extension is not installed or in an unusable state.
    pub fn object_not_in_prerequisite_state(message: impl Into<String>) -> Self {
        Self::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            message,
        )
    }

    /// 0A000: something PostgreSQL allows that audit_db cannot support safely.
    pub fn feature_not_supported(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, message)
    }

    /// 25006: a write attempted on a hot standby.
    pub fn read_only_transaction(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION, message)
    }

    /// XX000: an SPI call failed in a way that is a bug of ours, not of the input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, message)
    }

    /// Raises this error as a PostgreSQL ERROR; never returns.
    pub fn report(self) -> ! {
        let mut report = ErrorReport::new(self.code, self.message, "audit_db");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR-level reports do not return")
    }
}

impl From<pgrx::spi::Error> for AuditError {
    fn from(e: pgrx::spi::Error) -> Self {
        AuditError::internal(format!("SPI call failed: {e}"))
            .hint("This is a bug in audit_db; please report it with the statement that caused it.")
    }
}

/// Turns `Result<T, AuditError>` into `T`, raising the error as a PostgreSQL ERROR.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for AuditResult<T> {
    fn or_report(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => e.report(),
        }
    }
}
