//! `audit_verify_integrity()` for 0.6.0: one streaming pass over the blocks and the
//! rows, both in epoch order (a merge: memory stays flat whatever the row count), plus
//! the legacy chains of rows written before 0.6.0 (`integrity::verify`).
//!
//! Steps, each its own function: `next_block` (chain, signature, retired totals),
//! `check_one_row` (hash and signature, the same code path as the insert trigger),
//! `close_epoch` (count and sum of the epoch's rows against its block).

use crate::error::{AuditError, AuditResult, OrReport};
use crate::seal::{check_row, signing_ring};
use audit_db_core::crypto::KeyRing;
use audit_db_core::integrity::GENESIS;
use audit_db_core::pseudonym::{self, Strategy};
use audit_db_core::seal::{anchor_hash, block_hash, element, EventV2, Limbs};
use pgrx::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub checked: i64,
    pub hash_mismatches: i64,
    pub signature_mismatches: i64,
    pub chain_breaks: i64,
    pub first_bad_id: Option<i64>,
    pub blocks: i64,
    pub unsealed: i64,
    pub legacy: i64,
    /// Rows with no integrity evidence at all (before 0.4.0, or adopted).
    pub unchained: i64,
    pub unverifiable: i64,
}

impl Report {
    fn bad(&mut self, id: i64) {
        self.first_bad_id = Some(self.first_bad_id.map_or(id, |f| f.min(id)));
    }
}

/// A block as verification reads it, with what retention and erasure took from it.
struct Block {
    epoch: i64,
    rows: i64,
    sum: Limbs,
    retired_rows: i64,
    retired_sum: Limbs,
}

/// Reads and checks the next block: its signature and its link to `prev`.
fn next_block(r: &pgrx::spi::SpiHeapTupleData, prev: &mut String, ring: Option<&KeyRing>, report: &mut Report) -> AuditResult<Block> {
    let epoch = r.get::<i64>(1)?.unwrap_or(0);
    let rows = r.get::<i64>(2)?.unwrap_or(0);
    let sum = Limbs::parse(&r.get::<String>(3)?.unwrap_or_default()).unwrap_or_default();
    let prev_hash = r.get::<String>(4)?.unwrap_or_default();
    let hash = r.get::<String>(5)?.unwrap_or_default();
    let signature = r.get::<String>(6)?;
    let legacy_heads = r.get::<pgrx::JsonB>(7)?;
    let expected = match legacy_heads {
        Some(heads) => anchor_hash(&parse_heads(&heads.0)),
        None => block_hash(epoch, rows, &sum, &prev_hash),
    };
    let signed_ok = match (&signature, ring) {
        (Some(sig), Some(ring)) => crate::seal::signed_by(ring, &hash, sig),
        (Some(_), None) => {
            report.unverifiable += 1;
            true
        }
        (None, _) => true,
    };
    if prev_hash != *prev || expected != hash || !signed_ok {
        report.chain_breaks += 1;
    }
    *prev = hash;
    report.blocks += 1;
    Ok(Block {
        epoch,
        rows,
        sum,
        retired_rows: r.get::<i64>(8)?.unwrap_or(0),
        retired_sum: r
            .get::<Vec<String>>(9)?
            .unwrap_or_default()
            .iter()
            .filter_map(|s| Limbs::parse(s))
            .fold(Limbs::default(), |mut a, l| {
                a.add(&l);
                a
            }),
    })
}

fn parse_heads(v: &serde_json::Value) -> Vec<(String, i64, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    Some((h.get(0)?.as_str()?.to_string(), h.get(1)?.as_i64()?, h.get(2)?.as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Maps a token or encryption pseudonym back to its original (cached), for rows
/// pseudonymized after they were written.
struct Resolver<'a> {
    ring: Option<&'a KeyRing>,
    ext: String,
    cache: std::cell::RefCell<HashMap<String, Option<String>>>,
}

impl Resolver<'_> {
    fn resolve(&self, value: &str) -> Option<String> {
        let ring = self.ring?;
        if let Some(hit) = self.cache.borrow().get(value) {
            return hit.clone();
        }
        let original = match pseudonym::classify(value) {
            Some(Strategy::Encryption) => pseudonym::decrypt_pseudonym(ring, value).ok(),
            Some(Strategy::Token) => Spi::get_one_with_args::<String>(
                &format!(
                    "SELECT (SELECT original_id FROM {}.pseudonym_mapping WHERE pseudonym_id = $1 LIMIT 1)",
                    self.ext
                ),
                &[value.into()],
            )
            .ok()
            .flatten()
            .and_then(|sealed| pseudonym::open_original(ring, &sealed).ok()),
            _ => None,
        };
        self.cache.borrow_mut().insert(value.to_string(), original.clone());
        original
    }
}

const ROW_SQL: &str = "SELECT id::int8, \"timestamp\", ttl, principal_id, organization_id, action, target_resource_type,
        target_resource_id, status, outcome_description, hash, hash_algorithm, event_version, correlation_id,
        data_classification, retention_policy, processing_latency, details::text, seal_epoch, row_hash, signature,
        personal_keys";

/// Checks one row's hash and signature; returns (epoch, element, unsigned) for its
/// epoch: `unsigned` = no signature although a key is configured (acceptable only
/// inside a sealed block, sealed when the server had no key).
fn check_one_row(r: &pgrx::spi::SpiHeapTupleData, ring: Option<&KeyRing>, resolver: &Resolver, report: &mut Report) -> AuditResult<(i64, Limbs, bool)> {
    let s = |i: usize| r.get::<String>(i);
    let (id, ts) = (r.get::<i64>(1)?, r.get::<TimestampWithTimeZone>(2)?);
    let texts: Vec<Option<String>> = (3..=16).map(s).collect::<Result<_, _>>()?;
    let details = s(18)?;
    let epoch = r.get::<i64>(19)?.unwrap_or(0);
    let stored = s(20)?.unwrap_or_default();
    let signature = s(21)?;
    let personal = r.get::<Vec<String>>(22)?.unwrap_or_default();
    let t = |i: usize| texts[i - 3].as_deref();
    let event = EventV2 {
        id,
        timestamp_us: ts.map(|t| i64::from(pg_sys::TimestampTz::from(t)) + crate::integrity::UNIX_TO_PG_EPOCH_US),
        ttl: t(3),
        principal_id: t(4),
        organization_id: t(5),
        action: t(6),
        target_resource_type: t(7),
        target_resource_id: t(8),
        status: t(9),
        outcome_description: t(10),
        hash: t(11),
        hash_algorithm: t(12),
        event_version: t(13),
        correlation_id: t(14),
        data_classification: t(15),
        retention_policy: t(16),
        processing_latency: r.get::<i32>(17)?,
        details: details.as_deref(),
        seal_epoch: Some(epoch),
    };
    let check = check_row(&event, &stored, signature.as_deref(), &personal, ring, &|v| resolver.resolve(v));
    report.checked += 1;
    if !check.hash_ok {
        report.hash_mismatches += 1;
        report.bad(id.unwrap_or(0));
    }
    if !check.signature_ok {
        report.signature_mismatches += 1;
        report.bad(id.unwrap_or(0));
    }
    if !check.verifiable {
        report.unverifiable += 1;
    }
    let unsigned = signature.is_none() && ring.is_some();
    Ok((epoch, element(&stored, signature.as_deref()), unsigned))
}

/// Compares an epoch's rows (count, sum) with its block; `block` None = no block.
fn close_epoch(block: Option<&Block>, rows: i64, sum: &Limbs, first_id: i64, report: &mut Report) {
    let ok = match block {
        Some(b) => {
            let mut expected = sum.to_owned();
            expected.add(&b.retired_sum);
            rows + b.retired_rows == b.rows && expected == b.sum
        }
        None => rows == 0,
    };
    if !ok {
        report.chain_breaks += 1;
        report.bad(first_id);
    }
}

/// Frees a batch once read: pgrx keeps every SPI tuple table until the connection
/// ends, so a cursor read in one connection would hold every row it ever fetched.
fn free_tuptable(table: *mut pg_sys::SPITupleTable) {
    if !table.is_null() {
        // SAFETY: a table made by this connection's last fetch, no longer referenced
        // (the batch it came in was consumed above).
        unsafe { pg_sys::SPI_freetuptable(table) };
    }
}

/// Verifies every 0.6.0 row in [from, to] and, over the whole range, every block.
pub fn verify_sealed(from: TimestampWithTimeZone, to: TimestampWithTimeZone, report: &mut Report) -> AuditResult<()> {
    let ext = crate::spi_util::ext_schema()?;
    let ring = signing_ring();
    let ring = ring.as_deref();
    let resolver = Resolver { ring, ext: ext.clone(), cache: Default::default() };
    let whole = from == TimestampWithTimeZone::negative_infinity() && to == TimestampWithTimeZone::positive_infinity();
    Spi::connect(|client| {
        let mut blocks = client.open_cursor(
            &format!(
                "SELECT b.epoch, b.rows, b.sum, b.prev_hash, b.block_hash, b.signature, b.legacy_heads,
                        (SELECT pg_catalog.sum(r.rows)::int8 FROM {ext}.audit_seal_retired r WHERE r.epoch = b.epoch),
                        (SELECT pg_catalog.array_agg(r.sum) FROM {ext}.audit_seal_retired r WHERE r.epoch = b.epoch)
                   FROM {ext}.audit_seal_block b ORDER BY b.epoch"
            ),
            &[],
        );
        let mut rows = client.open_cursor(
            &format!(
                "{ROW_SQL} FROM {ext}.audit_log WHERE seal_epoch IS NOT NULL AND \"timestamp\" >= $1 AND \"timestamp\" <= $2
                  ORDER BY seal_epoch, id"
            ),
            &[from.into(), to.into()],
        );
        let last_sealed = Spi::get_one::<i64>(&format!("SELECT coalesce(pg_catalog.max(epoch), 0) FROM {ext}.audit_seal_block"))?
            .unwrap_or(0);
        let mut prev = GENESIS.to_string();
        let mut pending: std::collections::VecDeque<Block> = Default::default();
        let mut blocks_done = false;
        // Reads blocks up to `epoch` (chain-checking each); returns the block of `epoch`.
        let mut advance = |upto: i64, pending: &mut std::collections::VecDeque<Block>, report: &mut Report| -> AuditResult<()> {
            while !blocks_done && pending.back().map(|b| b.epoch < upto).unwrap_or(true) {
                let t = blocks.fetch(1)?;
                // SAFETY: the table fetch() just made (read before any other SPI call).
                let table = unsafe { pg_sys::SPI_tuptable };
                match t.into_iter().next() {
                    Some(r) => pending.push_back(next_block(&r, &mut prev, ring, report)?),
                    None => blocks_done = true,
                }
                free_tuptable(table);
            }
            Ok(())
        };
        // epoch, rows, sum, first id, rows without signature
        let mut current: Option<(i64, i64, Limbs, i64, i64)> = None;
        let flush = |cur: (i64, i64, Limbs, i64, i64), pending: &mut std::collections::VecDeque<Block>, report: &mut Report| {
            // Blocks before this epoch that no row reached: all their rows must be retired.
            while let Some(b) = pending.front() {
                if b.epoch >= cur.0 {
                    break;
                }
                let b = pending.pop_front().expect("front exists");
                if whole && b.epoch > 0 {
                    close_epoch(Some(&b), 0, &Limbs::default(), 0, report);
                }
            }
            let block = pending.front().filter(|b| b.epoch == cur.0);
            match block {
                Some(b) if whole => close_epoch(Some(b), cur.1, &cur.2, cur.3, report),
                Some(_) => {}
                None if cur.0 > last_sealed => {
                    report.unsealed += cur.1;
                    // Not sealed and not signed although a key is configured: the
                    // trigger signs every row, so these did not come through it.
                    if cur.4 > 0 {
                        report.signature_mismatches += cur.4;
                        report.bad(cur.3);
                    }
                }
                None if whole => close_epoch(None, cur.1, &cur.2, cur.3, report),
                None => {}
            }
            if block.is_some() {
                pending.pop_front();
            }
        };
        loop {
            let batch = rows.fetch(2000)?;
            // SAFETY: the table fetch() just made (read before any other SPI call).
            let table = unsafe { pg_sys::SPI_tuptable };
            if batch.is_empty() {
                free_tuptable(table);
                break;
            }
            for r in batch {
                let id = r.get::<i64>(1)?.unwrap_or(0);
                let (epoch, el, unsigned) = check_one_row(&r, ring, &resolver, report)?;
                match &mut current {
                    Some(c) if c.0 == epoch => {
                        c.1 += 1;
                        c.2.add(&el);
                        c.4 += i64::from(unsigned);
                    }
                    _ => {
                        if let Some(c) = current.take() {
                            advance(c.0, &mut pending, report)?;
                            flush(c, &mut pending, report);
                        }
                        current = Some((epoch, 1, el, id, i64::from(unsigned)));
                    }
                }
            }
            free_tuptable(table);
        }
        if let Some(c) = current.take() {
            advance(c.0, &mut pending, report)?;
            flush(c, &mut pending, report);
        }
        advance(i64::MAX, &mut pending, report)?;
        flush((i64::MAX, 0, Limbs::default(), 0, 0), &mut pending, report);
        Ok::<_, AuditError>(())
    })
}

/// The whole check: 0.6.0 rows and blocks, then the legacy chains.
pub fn verify(from: TimestampWithTimeZone, to: TimestampWithTimeZone) -> AuditResult<Report> {
    let mut report = Report::default();
    verify_sealed(from, to, &mut report)?;
    let legacy = crate::integrity::verify_legacy(from, to)?;
    report.checked += legacy.checked;
    report.legacy = legacy.checked;
    report.unchained = legacy.unchained;
    report.hash_mismatches += legacy.hash_mismatches;
    report.signature_mismatches += legacy.signature_mismatches;
    report.chain_breaks += legacy.chain_breaks;
    report.unverifiable += legacy.unverifiable;
    if let Some(id) = legacy.first_bad_id {
        report.bad(id);
    }
    Ok(report)
}

/// `audit_verify_integrity(from_ts, to_ts)` (0.6.0): see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "audit_verify_integrity")]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_verify_integrity_v2(
    from_ts: default!(Option<TimestampWithTimeZone>, "'-infinity'"),
    to_ts: default!(Option<TimestampWithTimeZone>, "'infinity'"),
) -> TableIterator<
    'static,
    (
        name!(checked, i64),
        name!(hash_mismatches, i64),
        name!(signature_mismatches, i64),
        name!(chain_breaks, i64),
        name!(first_bad_id, Option<i64>),
        name!(blocks, i64),
        name!(unsealed, i64),
        name!(legacy, i64),
    ),
> {
    let from = from_ts.ok_or_else(|| AuditError::null_argument("from_ts")).or_report();
    let to = to_ts.ok_or_else(|| AuditError::null_argument("to_ts")).or_report();
    let r = verify(from, to).or_report();
    // SAFETY: reads backend state.
    if !unsafe { pg_sys::RecoveryInProgress() } {
        record_run(&r, from, to).or_report();
    }
    if r.legacy > r.unchained {
        pgrx::notice!(
            "audit_db: {} rows were written before 0.6.0 and verified through their per-organization chains",
            r.legacy - r.unchained
        );
    }
    if r.unchained > 0 {
        pgrx::notice!(
            "audit_db: {} rows carry no integrity evidence (written before 0.4.0, or adopted): counted in legacy, not verified",
            r.unchained
        );
    }
    if r.unsealed > 0 {
        pgrx::notice!("audit_db: {} rows are not sealed yet; their signatures cover them", r.unsealed);
    }
    if r.unverifiable > 0 {
        pgrx::notice!("audit_db: {} rows or blocks could not be fully verified (no key, or a key not in the ring)", r.unverifiable);
    }
    TableIterator::once((r.checked, r.hash_mismatches, r.signature_mismatches, r.chain_breaks, r.first_bad_id, r.blocks, r.unsealed, r.legacy))
}

fn record_run(r: &Report, from: TimestampWithTimeZone, to: TimestampWithTimeZone) -> AuditResult<()> {
    let failed = r.hash_mismatches + r.signature_mismatches + r.chain_breaks > 0;
    Spi::run_with_args(
        "INSERT INTO audit_integrity_log (audit_log_id, verification_timestamp, verification_status,
                                          verification_details, verified_by)
         VALUES (coalesce($1::int8, 0)::int4, pg_catalog.now(), $2,
                 pg_catalog.jsonb_build_object('from', $3::timestamptz, 'to', $4::timestamptz,
                     'checked', $5::int8, 'hash_mismatches', $6::int8, 'signature_mismatches', $7::int8,
                     'chain_breaks', $8::int8, 'blocks', $9::int8, 'unsealed', $10::int8, 'legacy', $11::int8,
                     'unverifiable', $12::int8), session_user)",
        &[
            r.first_bad_id.into(),
            (if failed { "FAILED" } else { "PASSED" }).into(),
            from.into(),
            to.into(),
            r.checked.into(),
            r.hash_mismatches.into(),
            r.signature_mismatches.into(),
            r.chain_breaks.into(),
            r.blocks.into(),
            r.unsealed.into(),
            r.legacy.into(),
            r.unverifiable.into(),
        ],
    )?;
    Ok(())
}

/// `audit_integrity_digest(upto)` (0.6.0): the newest block up to a time, to keep
/// outside the database and compare later (catches a rewrite of the whole chain).
#[pg_extern(stable, parallel_safe, security_definer, name = "audit_integrity_digest")]
#[search_path(@extschema@, pg_catalog, pg_temp)]
fn audit_integrity_digest_v2(upto: default!(Option<TimestampWithTimeZone>, "now()")) -> pgrx::JsonB {
    let upto = upto.ok_or_else(|| AuditError::null_argument("upto")).or_report();
    Spi::get_one_with_args::<pgrx::JsonB>(
        "SELECT pg_catalog.jsonb_build_object(
                    'format', 'audit_db.digest.v2', 'upto', $1::timestamptz,
                    'blocks', (SELECT pg_catalog.count(*) FROM audit_seal_block WHERE sealed_at <= $1),
                    'head', (SELECT pg_catalog.jsonb_build_object('epoch', epoch, 'block_hash', block_hash, 'rows', rows)
                               FROM audit_seal_block WHERE sealed_at <= $1 ORDER BY epoch DESC LIMIT 1),
                    'rows_sealed', (SELECT coalesce(pg_catalog.sum(rows), 0) FROM audit_seal_block WHERE sealed_at <= $1),
                    'rows_retired', (SELECT coalesce(pg_catalog.sum(rows), 0) FROM audit_seal_retired))",
        &[upto.into()],
    )
    .map_err(AuditError::from)
    .or_report()
    .unwrap_or(pgrx::JsonB(serde_json::json!({})))
}
