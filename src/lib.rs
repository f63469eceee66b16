//! audit_db: a compliance-grade audit-log store inside PostgreSQL.
//!
//! The tables come from `sql/schema.sql` (the original Drizzle migrations 0000-0006);
//! the Rust modules hold what benefits from it. Pure logic (date maths, naming) lives
//! in the `audit_db_core` crate so plain `cargo test` covers it.

use pgrx::prelude::*;

pub mod analyze;
pub mod convert;
pub mod error;
pub mod maintenance;
pub mod partition;
pub mod regclass;
pub mod schema_check;
pub mod spi_util;
pub mod subxact;

::pgrx::pg_module_magic!(name, version);

// Tables, indexes, roles and SQL helpers come first: function defaults such as
// `'audit_log'::regclass` need the tables to exist.
extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

// After every function exists: privileges, documentation, and the first partitions.
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["timezone = 'UTC'"]
    }
}
