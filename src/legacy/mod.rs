//! The 0.4.0/0.5.0 chain: verification of rows written before 0.6.0.

pub mod integrity;
