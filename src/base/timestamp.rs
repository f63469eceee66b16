//! Timestamps between PostgreSQL's raw form and the Unix epoch.

/// Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
pub const UNIX_TO_PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Microseconds since the Unix epoch of a timestamp's raw value (microseconds since
/// 2000-01-01). Saturating: `infinity` (i64::MAX) stays the largest value instead of
/// overflowing.
pub fn unix_micros(pg_us: i64) -> i64 {
    pg_us.saturating_add(UNIX_TO_PG_EPOCH_US)
}
