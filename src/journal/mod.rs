//! The audit_log table itself: event ids, rows of the original application
//! (adoption, their own hashes), and the schema check against the shipped manifest.

pub mod adopt;
pub mod original;
pub mod schema_check;
pub mod unique_id;
