//! Rows the original application wrote (adopted, or written before audit_db chained
//! or sealed rows) carry no evidence of audit_db's, but most carry the application's
//! own SHA-256 in `hash` (`hash_algorithm` = 'SHA-256'). Verification recomputes it
//! (`audit_db_core::original`) and compares (issue 13, item 5):
//! - equal: verified;
//! - different, on a row marked `"pseudonymized": true`: its principal was replaced
//!   after the hash was made: unverifiable, not tampering;
//! - different otherwise: a hash mismatch;
//! - no hash, another algorithm, or a time the application's string cannot have had:
//!   counted as carrying no evidence, as before;
//! - whatever its hash, a row past the horizon of the anchor (the highest id that
//!   existed without 0.6.0 evidence when the evidence began; 0 without an anchor) was
//!   written with the trigger off: a hash mismatch (issue 25).

use crate::base::error::AuditResult;
use audit_db_core::original::{original_hash, OriginalEvent};
use pgrx::prelude::*;

/// `audit_original_hash_matches(...)`: whether the stored hash is the original
/// application's hash of the row's values; NULL when it cannot be recomputed.
/// VOLATILE only so that the planner does not inline it into each aggregate that reads
/// its answer; PARALLEL SAFE.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_safe)]
fn audit_original_hash_matches(
    stored: Option<&str>,
    algorithm: Option<&str>,
    ts: Option<TimestampWithTimeZone>,
    action: Option<&str>,
    status: Option<&str>,
    principal_id: Option<&str>,
    organization_id: Option<&str>,
    target_resource_type: Option<&str>,
    target_resource_id: Option<&str>,
    outcome_description: Option<&str>,
) -> Option<bool> {
    let (stored, ts) = (stored?, ts?);
    if algorithm != Some("SHA-256") {
        return None;
    }
    let event = OriginalEvent {
        // `infinity` has no toISOString() form: it recomputes to None, not an overflow.
        timestamp_us: crate::base::timestamp::unix_micros(i64::from(pg_sys::TimestampTz::from(ts))),
        action,
        status,
        principal_id,
        organization_id,
        target_resource_type,
        target_resource_id,
        outcome_description,
    };
    original_hash(&event).map(|h| h == stored)
}

/// What verification finds for the rows without chain or seal in a range.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unchained {
    pub rows: i64,
    pub verified: i64,
    pub mismatched: i64,
    pub pseudonymized: i64,
    pub first_bad_id: Option<i64>,
}

pub fn check_unchained(ext: &str, from: TimestampWithTimeZone, to: TimestampWithTimeZone) -> AuditResult<Unchained> {
    Spi::connect(|client| {
        let row = client
            .select(
                &format!(
                    "SELECT pg_catalog.count(*)::int8,
                            pg_catalog.count(*) FILTER (WHERE m AND NOT late)::int8,
                            pg_catalog.count(*) FILTER (WHERE late OR (NOT m AND NOT p))::int8,
                            pg_catalog.count(*) FILTER (WHERE NOT late AND NOT m AND p)::int8,
                            pg_catalog.min(id) FILTER (WHERE late OR (NOT m AND NOT p))::int8
                       FROM (SELECT a.id,
                                    -- Past the anchor's horizon (none: 0): written with the
                                    -- trigger off, whatever its hash says.
                                    a.id > coalesce((SELECT b.horizon_id FROM {ext}.audit_seal_block b
                                                      WHERE b.epoch OPERATOR(pg_catalog.=) 0), 0) AS late,
                                    {ext}.audit_original_hash_matches(a.hash, a.hash_algorithm, a.\"timestamp\",
                                        a.action, a.status, a.principal_id, a.organization_id,
                                        a.target_resource_type, a.target_resource_id, a.outcome_description) AS m,
                                    coalesce(a.details @> '{{\"pseudonymized\": true}}', false) AS p
                               FROM {ext}.audit_log a
                              WHERE a.\"timestamp\" >= $1 AND a.\"timestamp\" <= $2
                                AND a.chain_seq IS NULL AND a.seal_epoch IS NULL) t"
                ),
                None,
                &[from.into(), to.into()],
            )?
            .first();
        Ok(Unchained {
            rows: row.get::<i64>(1)?.unwrap_or(0),
            verified: row.get::<i64>(2)?.unwrap_or(0),
            mismatched: row.get::<i64>(3)?.unwrap_or(0),
            pseudonymized: row.get::<i64>(4)?.unwrap_or(0),
            first_bad_id: row.get::<i64>(5)?,
        })
    })
}
