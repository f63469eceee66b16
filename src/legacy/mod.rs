//! The 0.4.0/0.5.0 chain: its insert trigger and SQL functions (named by the frozen
//! 0.4.0 and 0.5.0 scripts), and the verification of rows written before 0.6.0.

pub mod integrity;
