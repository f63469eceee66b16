//! audit_db: a compliance-grade audit-log store inside PostgreSQL.
//!
//! The tables come from `sql/schema.sql` (the original Drizzle migrations 0000-0006);
//! the Rust modules hold what benefits from it. Pure logic (date maths, naming) lives
//! in the `audit_db_core` crate so plain `cargo test` covers it. README.md lists the
//! folders of src/ by floor, with their modules (scripts/check_imports.py checks it).

// Every unsafe block says why it is sound (`cargo clippy` asks for a `// SAFETY:` line).
#![warn(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

pub mod base;
pub mod journal;
pub mod legacy;
pub mod evidence;
pub mod partitions;
pub mod privacy;
pub mod replication;

::pgrx::pg_module_magic!(name, version);

/// Registers the settings (`audit_db.key_file`, `audit_db.key_command` and
/// `audit_db.personal_details_keys` in base/keys.rs, `audit_db.sealer_database` and
/// `audit_db.seal_interval` in evidence/sealer.rs, `audit_db.lock_attempt_timeout` in
/// base/lock_retry.rs); meant to run from shared_preload_libraries, where it also sets
/// up the seal epochs' shared memory, registers the sealer worker and loads the key
/// ring for the hash strategy.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    base::keys::register_gucs();
    evidence::sealer::register_gucs();
    base::lock_retry::register_gucs();
    // SAFETY: reads a postmaster global.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        evidence::seal::init_preloaded();
        evidence::sealer::register();
        privacy::hash_pseudonym::preload_key_ring();
    }
}

// Tables, indexes, roles and SQL helpers come first: function defaults such as
// `'audit_log'::regclass` need the tables to exist.
extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

// After every function exists: privileges, documentation, and the first partitions.
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The test cluster preloads audit_db and reads a throwaway key file written here,
    /// before the server starts (cargo pgrx test runs it as `postgres`).
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        use std::os::unix::fs::PermissionsExt;
        let path = "/tmp/audit_db_pgrx_test.keys";
        std::fs::write(path, "test-1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n")
            .expect("write the test key file");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
        // The harness runs as root and starts the server as postgres.
        let _ = std::process::Command::new("chown").args(["postgres:postgres", path]).status();
        vec![
            "timezone = 'UTC'",
            "shared_preload_libraries = 'audit_db'",
            "audit_db.key_file = '/tmp/audit_db_pgrx_test.keys'",
        ]
    }
}
