//! Shared utilities and state: errors, SPI helpers, running as an owner, regclass and
//! jsonb datums, subtransactions, lock retries, the internal-write marker, the root key,
//! timestamps, whether this database is an archive, and whether this session is a restore.

pub mod archive_role;
pub mod error;
pub mod internal;
pub mod keys;
pub mod lock_retry;
pub mod owner;
pub mod regclass;
pub mod restore;
pub mod spi_util;
pub mod subxact;
pub mod timestamp;
