//! Pure logic of audit_db, free of PostgreSQL so that plain `cargo test` covers it.
//!
//! * [`calendar`]: proleptic Gregorian civil dates and day arithmetic.
//! * [`command`]: subject commands a primary sends to its archive.
//! * [`crypto`]: the key file, HKDF, HMAC, AES-GCM (with published test vectors).
//! * [`integrity`]: the 0.4/0.5 canonical encoding and chain (rows written before 0.6.0).
//! * [`jsontext`]: JSON text walked without recursion (any depth PostgreSQL accepts).
//! * [`manifest`]: schema manifests and catalog drift.
//! * [`original`]: the original application's event hash (verifying adopted rows).
//! * [`partition`]: partition intervals, period bounds (UTC), naming and planning.
//! * [`pseudonym`]: pseudonym formats (hash, token, encryption) and their parsing.
//! * [`seal`]: the 0.6.0 row encoding, row hash, block hash and epoch sums.

pub mod calendar;
pub mod command;
pub mod crypto;
pub mod integrity;
pub mod jsontext;
pub mod manifest;
pub mod original;
pub mod partition;
pub mod pseudonym;
pub mod seal;
