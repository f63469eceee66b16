//! Adoption's copy of audit_log rows (issue 14): the rows the original application
//! wrote keep every value, also a time of `infinity` or `-infinity` that the insert
//! trigger refuses from anyone else, and they are not looked up one by one for
//! duplicate ids (they come from a table whose primary key was `id`). Both through
//! audit_db's internal-write marker, which only this function can set from SQL, and
//! only inside `CREATE EXTENSION audit_db` (finalize.sql's adoption step).

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::regclass::Regclass;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// Inside `CREATE` or `ALTER EXTENSION audit_db` (its own script running).
pub(crate) fn inside_our_create_extension() -> bool {
    // SAFETY: plain reads of backend globals.
    unsafe { pg_sys::creating_extension && pg_sys::CurrentExtensionObject == crate::base::spi_util::ext_oid() }
}

/// Copies the rows of `source` dated `since` or later (all when NULL) into `target`,
/// by column name; returns how many.
fn adopt_rows(source: Regclass, target: Regclass, since: Option<TimestampWithTimeZone>) -> AuditResult<i64> {
    if !inside_our_create_extension() {
        return Err(AuditError::insufficient_privilege("audit_adopt_rows() runs only inside CREATE EXTENSION audit_db")
            .hint("Adopt a Drizzle-managed database with SET audit_db.adopt = 'drizzle'; CREATE EXTENSION audit_db;"));
    }
    let (names, cols) = Spi::connect(|client| {
        let names = client
            .select("SELECT $1::regclass::text, $2::regclass::text", Some(1), &[source.into(), target.into()])?
            .first()
            .get_two::<String, String>()?;
        let mut cols = Vec::new();
        for r in client.select(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = $2 AND a.attnum > 0 AND NOT a.attisdropped
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute o WHERE o.attrelid = $1
                               AND o.attname = a.attname AND o.attnum > 0 AND NOT o.attisdropped)
              ORDER BY a.attnum",
            None,
            &[source.into(), target.into()],
        )? {
            cols.extend(r.get::<String>(1)?);
        }
        Ok::<_, pgrx::spi::Error>((names, cols))
    })?;
    let (Some(from), Some(into)) = names else {
        return Err(AuditError::internal("adoption: a table vanished"));
    };
    let list: Vec<String> = cols.iter().map(|c| quote_identifier(c)).collect();
    let list = list.join(", ");
    let _internal = crate::base::internal::guard();
    Ok(Spi::get_one_with_args::<i64>(
        &format!(
            "WITH c AS (INSERT INTO {into} ({list}) SELECT {list} FROM {from}
                         WHERE $1::timestamptz IS NULL OR \"timestamp\" >= $1 RETURNING 1)
             SELECT pg_catalog.count(*) FROM c"
        ),
        &[since.into()],
    )?
    .unwrap_or(0))
}

/// `audit_adopt_rows(source, target, since)`: adoption's copy of audit_log rows; see
/// the module documentation. 42501 outside CREATE EXTENSION audit_db.
#[pg_extern(volatile, parallel_unsafe)]
fn audit_adopt_rows(source: Regclass, target: Regclass, since: Option<TimestampWithTimeZone>) -> i64 {
    adopt_rows(source, target, since).or_report()
}
