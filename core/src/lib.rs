//! Pure logic of audit_db, free of PostgreSQL so that plain `cargo test` covers it.
//!
//! * [`calendar`]: proleptic Gregorian civil dates and day arithmetic.
//! * [`command`]: subject commands a primary sends to its archive.
//! * [`manifest`]: schema manifests and catalog drift.
//! * [`original`]: the original application's event hash (verifying adopted rows).
//! * [`partition`]: partition intervals, period bounds (UTC), naming and planning.

pub mod calendar;
pub mod command;
pub mod crypto;
pub mod integrity;
pub mod manifest;
pub mod original;
pub mod partition;
pub mod pseudonym;
pub mod seal;
