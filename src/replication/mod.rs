//! The archive cluster fed by logical replication.

pub mod archive;
