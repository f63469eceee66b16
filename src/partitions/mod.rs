//! Partitions: DDL and configuration, maintenance, analysis, conversion.

pub mod analyze;
pub mod convert;
pub mod maintenance;
pub mod partition;
