//! `audit_verify_integrity()` for 0.6.0: one streaming pass over the blocks and the
//! rows, both in epoch order (a merge: memory stays flat whatever the row count), plus
//! the legacy chains of rows written before 0.6.0 (`integrity::verify`).
//!
//! Steps, each its own function: `next_block` (chain, signature, retired totals),
//! `tallies` (one aggregate query per chunk of epochs; each row is checked by
//! `audit_seal_row_check`, the insert trigger's own code, in parallel workers where
//! PostgreSQL chooses them), `merge_chunk` and `close_epoch` (count and sum of each
//! epoch's rows against its block).

use crate::base::spi_util::q;
use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::signing_ring;
use audit_db_core::crypto::KeyRing;
use audit_db_core::integrity::GENESIS;
use audit_db_core::seal::{anchor_hash, block_hash, Horizon, Limbs};
use pgrx::prelude::*;

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
    /// Rows without chain or seal, and those verified against the original
    /// application's hash.
    pub original_rows: i64,
    pub original_verified: i64,
    pub unverifiable: i64,
    /// Rows without 0.6.0 evidence past the anchor's horizon (written with the trigger
    /// off): counted in `hash_mismatches`, not in `legacy`.
    pub past_horizon: i64,
    /// More rows without 0.6.0 evidence up to the horizon than the anchor recorded.
    pub beyond_recorded: i64,
    /// The anchor's horizon (none before the first block is read, or without anchor).
    pub horizon: Option<Horizon>,
    /// Rows without 0.6.0 evidence that audit_db retired (retention, erasure): epoch 0
    /// of `audit_seal_retired`.
    pub horizon_retired: i64,
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
    let anchor = epoch == 0;
    let expected = if anchor {
        // The anchor: the legacy chains' heads and the horizon (issue 25).
        let heads = r.get::<pgrx::JsonB>(7)?.map(|h| parse_heads(&h.0)).unwrap_or_default();
        let horizon = Horizon { max_id: r.get::<i64>(10)?.unwrap_or(0), rows: r.get::<i64>(11)?.unwrap_or(0) };
        report.horizon = Some(horizon);
        anchor_hash(&heads, horizon)
    } else {
        block_hash(epoch, rows, &sum, &prev_hash)
    };
    let signed_ok = match (&signature, ring) {
        (Some(sig), Some(ring)) => crate::base::keys::signed_by(ring, &hash, sig),
        (Some(_), None) => {
            report.unverifiable += 1;
            true
        }
        // With a key configured every block is signed by the sealer, and the anchor by
        // the step or install that wrote it (audit_seal_anchor): an unsigned one was
        // written by someone without the key (issue 25), or before a key was configured
        // (docs/security.md).
        (None, Some(_)) => false,
        (None, None) => true,
    };
    if prev_hash != *prev || expected != hash || !signed_ok {
        report.chain_breaks += 1;
    }
    *prev = hash;
    report.blocks += 1;
    let retired_rows = r.get::<i64>(8)?.unwrap_or(0);
    if anchor {
        report.horizon_retired = retired_rows;
    }
    Ok(Block {
        epoch,
        rows,
        sum,
        retired_rows,
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

/// What one epoch's rows add up to (one row of `TALLY_SQL`).
struct Tally {
    epoch: i64,
    rows: i64,
    hash_bad: i64,
    signature_bad: i64,
    unverifiable: i64,
    unsigned: i64,
    first_bad_id: Option<i64>,
    first_id: i64,
    sum: Limbs,
}

/// Per epoch of [$1, $2] (and rows dated in [$3, $4]): the rows, their verdicts
/// (`audit_seal_row_check`, PARALLEL SAFE: PostgreSQL may spread the rows over
/// parallel workers) and the exact sums of their element limbs.
fn tally_sql(ext: &str) -> String {
    format!(
        "SELECT t.seal_epoch, pg_catalog.count(*)::int8,
                pg_catalog.count(*) FILTER (WHERE t.c[1] & {h} <> 0)::int8,
                pg_catalog.count(*) FILTER (WHERE t.c[1] & {s} <> 0)::int8,
                pg_catalog.count(*) FILTER (WHERE t.c[1] & {v} <> 0)::int8,
                pg_catalog.count(*) FILTER (WHERE t.c[1] & {u} <> 0)::int8,
                pg_catalog.min(t.id) FILTER (WHERE t.c[1] & {bad} <> 0)::int8,
                pg_catalog.min(t.id)::int8,
                pg_catalog.sum(t.c[2])::text, pg_catalog.sum(t.c[3])::text,
                pg_catalog.sum(t.c[4])::text, pg_catalog.sum(t.c[5])::text
           FROM (SELECT a.seal_epoch, a.id, {ext}.audit_seal_row_check(a) AS c
                   FROM {ext}.audit_log a
                  WHERE a.seal_epoch BETWEEN $1 AND $2 AND a.\"timestamp\" >= $3 AND a.\"timestamp\" <= $4) t
          GROUP BY t.seal_epoch ORDER BY t.seal_epoch",
        h = crate::evidence::seal::HASH_BAD,
        s = crate::evidence::seal::SIGNATURE_BAD,
        v = crate::evidence::seal::UNVERIFIABLE,
        u = crate::evidence::seal::UNSIGNED,
        bad = crate::evidence::seal::HASH_BAD | crate::evidence::seal::SIGNATURE_BAD | crate::evidence::seal::UNSIGNED,
    )
}

/// The epochs' tallies of [lo, hi], in epoch order; the SPI result is freed here.
fn tallies(
    client: &pgrx::spi::SpiClient<'_>,
    sql: &str,
    (lo, hi): (i64, i64),
    (from, to): (TimestampWithTimeZone, TimestampWithTimeZone),
) -> AuditResult<Vec<Tally>> {
    let table = client.select(sql, None, &[lo.into(), hi.into(), from.into(), to.into()])?;
    // SAFETY: the table select() just made (read before any other SPI call).
    let raw = unsafe { pg_sys::SPI_tuptable };
    let mut out = Vec::with_capacity(table.len());
    for r in table {
        let sums: Vec<String> = (9..=12).map(|i| r.get::<String>(i).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
        out.push(Tally {
            epoch: r.get::<i64>(1)?.unwrap_or(0),
            rows: r.get::<i64>(2)?.unwrap_or(0),
            hash_bad: r.get::<i64>(3)?.unwrap_or(0),
            signature_bad: r.get::<i64>(4)?.unwrap_or(0),
            unverifiable: r.get::<i64>(5)?.unwrap_or(0),
            unsigned: r.get::<i64>(6)?.unwrap_or(0),
            first_bad_id: r.get::<i64>(7)?,
            first_id: r.get::<i64>(8)?.unwrap_or(0),
            sum: Limbs::from_signed_sums([&sums[0], &sums[1], &sums[2], &sums[3]])
                .ok_or_else(|| AuditError::internal("an element sum is not an integer"))?,
        });
    }
    free_tuptable(raw);
    Ok(out)
}

/// Adds an epoch's row verdicts to the report.
fn count_rows(t: &Tally, report: &mut Report) {
    report.checked += t.rows;
    report.hash_mismatches += t.hash_bad;
    // Unsigned rows while a key is configured are mismatches, sealed or not: the
    // trigger refuses to store an unsigned row while a key is configured.
    report.signature_mismatches += t.signature_bad + t.unsigned;
    report.unverifiable += t.unverifiable;
    if let Some(id) = t.first_bad_id {
        report.bad(id);
    }
}

/// How verification reads the chain of blocks and the range of rows.
struct Scope {
    /// The whole trail (not a time range): every block's count and sum must match.
    whole: bool,
    /// The newest sealed epoch; rows past it are not sealed yet.
    last_sealed: i64,
}

/// Compares one chunk: its blocks (in epoch order, chain already checked) with the
/// tallies of the rows in the same epoch range (in epoch order).
fn merge_chunk(blocks: &[Block], tallies: &[Tally], scope: &Scope, report: &mut Report) {
    use std::cmp::Ordering;
    let (mut b, mut t) = (blocks.iter().peekable(), tallies.iter().peekable());
    loop {
        let order = match (b.peek(), t.peek()) {
            (None, None) => break,
            (Some(block), Some(tally)) => block.epoch.cmp(&tally.epoch),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                // A block no row of the range reached: all its rows must be retired.
                let block = b.next().expect("peeked");
                if scope.whole && block.epoch > 0 {
                    close_epoch(Some(block), 0, &Limbs::default(), 0, report);
                }
            }
            Ordering::Equal => {
                let (block, tally) = (b.next().expect("peeked"), t.next().expect("peeked"));
                count_rows(tally, report);
                if scope.whole {
                    close_epoch(Some(block), tally.rows, &tally.sum, tally.first_id, report);
                }
            }
            Ordering::Greater => {
                let tally = t.next().expect("peeked");
                count_rows(tally, report);
                if tally.epoch > scope.last_sealed {
                    report.unsealed += tally.rows;
                } else if scope.whole {
                    close_epoch(None, tally.rows, &tally.sum, tally.first_id, report);
                }
            }
        }
    }
}

/// Blocks per chunk, and rows per chunk as the blocks count them: each chunk is one
/// aggregate query, its result (one row per epoch) held while it is compared.
const CHUNK_BLOCKS: usize = 20_000;
const CHUNK_ROWS: i64 = 2_000_000;

/// Verifies every 0.6.0 row in [from, to] and, over the whole range, every block: the
/// chain of blocks is read in order through a cursor (one block at a time), cut into
/// chunks of consecutive epochs, and each chunk's rows are checked and summed by one
/// aggregate query. Memory holds one chunk, whatever the size of the trail.
pub fn verify_sealed(from: TimestampWithTimeZone, to: TimestampWithTimeZone, report: &mut Report) -> AuditResult<()> {
    let ext = crate::base::spi_util::ext_schema()?;
    let ring = signing_ring()?;
    let ring = ring.as_deref();
    let whole = from == TimestampWithTimeZone::negative_infinity() && to == TimestampWithTimeZone::positive_infinity();
    let sql = tally_sql(&ext);
    Spi::connect(|client| {
        let last_sealed = client
            .select(&format!("SELECT coalesce(pg_catalog.max(epoch), 0) FROM {ext}.audit_seal_block"), None, &[])?
            .first()
            .get_one::<i64>()?
            .unwrap_or(0);
        let scope = Scope { whole, last_sealed };
        let mut blocks = client.open_cursor(
            &format!(
                "SELECT b.epoch, b.rows, b.sum, b.prev_hash, b.block_hash, b.signature, b.legacy_heads,
                        (SELECT pg_catalog.sum(r.rows)::int8 FROM {ext}.audit_seal_retired r WHERE r.epoch = b.epoch),
                        (SELECT pg_catalog.array_agg(r.sum) FROM {ext}.audit_seal_retired r WHERE r.epoch = b.epoch),
                        b.horizon_id, b.horizon_rows
                   FROM {ext}.audit_seal_block b ORDER BY b.epoch"
            ),
            &[],
        );
        let mut prev = GENESIS.to_string();
        let mut lo = i64::MIN;
        loop {
            let mut chunk: Vec<Block> = Vec::new();
            let mut rows = 0i64;
            let mut done = false;
            while chunk.len() < CHUNK_BLOCKS && rows < CHUNK_ROWS {
                let t = blocks.fetch(1)?;
                // SAFETY: the table fetch() just made (read before any other SPI call).
                let table = unsafe { pg_sys::SPI_tuptable };
                let next = match t.into_iter().next() {
                    Some(r) => Some(next_block(&r, &mut prev, ring, report)?),
                    None => None,
                };
                free_tuptable(table);
                match next {
                    Some(b) => {
                        rows += b.rows;
                        chunk.push(b);
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            // The last chunk reaches past every block: rows not sealed yet, or tagged
            // with an epoch no block has.
            let hi = if done { i64::MAX } else { chunk.last().map_or(i64::MAX, |b| b.epoch) };
            merge_chunk(&chunk, &tallies(&client, &sql, (lo, hi), (from, to))?, &scope, report);
            if done || hi == i64::MAX {
                break;
            }
            lo = hi + 1;
        }
        Ok::<_, AuditError>(())
    })
}

/// The whole check: 0.6.0 rows and blocks, then the legacy chains, then the rows
/// without 0.6.0 evidence against the anchor's horizon.
pub fn verify(from: TimestampWithTimeZone, to: TimestampWithTimeZone) -> AuditResult<Report> {
    let mut report = Report::default();
    verify_sealed(from, to, &mut report)?;
    let legacy = crate::legacy::integrity::verify_legacy(from, to)?;
    report.checked += legacy.checked;
    report.legacy = legacy.checked;
    report.unchained = legacy.unchained;
    report.original_verified = legacy.original_verified;
    report.original_rows = legacy.original_rows;
    report.hash_mismatches += legacy.hash_mismatches;
    report.signature_mismatches += legacy.signature_mismatches;
    report.chain_breaks += legacy.chain_breaks;
    report.unverifiable += legacy.unverifiable;
    if let Some(id) = legacy.first_bad_id {
        report.bad(id);
    }
    check_horizon(from, to, &mut report)?;
    Ok(report)
}

/// Rows without 0.6.0 evidence (no seal epoch) against the anchor's horizon (issue 25):
/// past it, a row was written with the trigger off, a mismatch whatever it carries
/// (those without a chain are already counted so by `original::check_unchained`; here
/// the chained ones are added, and all of them leave `legacy`). Up to it, the rows left
/// (in the whole table, whatever the range verified) and those audit_db retired cannot
/// be more than the anchor recorded: a row slipped in where one left is a chain break.
fn check_horizon(from: TimestampWithTimeZone, to: TimestampWithTimeZone, report: &mut Report) -> AuditResult<()> {
    let horizon = report.horizon.unwrap_or_default();
    let (past, past_chained, first, within) = Spi::connect(|client| {
        let t = client.select(
            &q("SELECT pg_catalog.count(*) FILTER (WHERE a.id > $3 AND a.\"timestamp\" >= $1 AND a.\"timestamp\" <= $2)::int8,
                       pg_catalog.count(*) FILTER (WHERE a.id > $3 AND a.\"timestamp\" >= $1 AND a.\"timestamp\" <= $2
                                                     AND a.chain_seq IS NOT NULL)::int8,
                       pg_catalog.min(a.id) FILTER (WHERE a.id > $3 AND a.\"timestamp\" >= $1 AND a.\"timestamp\" <= $2)::int8,
                       pg_catalog.count(*) FILTER (WHERE a.id <= $3)::int8
                  FROM @extschema@.audit_log a
                 WHERE a.seal_epoch IS NULL")?,
            Some(1),
            &[from.into(), to.into(), horizon.max_id.into()],
        )?;
        let r = t.first();
        Ok::<_, AuditError>((
            r.get::<i64>(1)?.unwrap_or(0),
            r.get::<i64>(2)?.unwrap_or(0),
            r.get::<i64>(3)?,
            r.get::<i64>(4)?.unwrap_or(0),
        ))
    })?;
    report.past_horizon = past;
    report.legacy -= past;
    report.original_rows -= past - past_chained;
    report.hash_mismatches += past_chained;
    if let Some(id) = first {
        report.bad(id);
    }
    let accounted = within + report.horizon_retired;
    if accounted > horizon.rows {
        report.beyond_recorded = accounted - horizon.rows;
        report.chain_breaks += 1;
    }
    Ok(())
}

/// `audit_verify_integrity(from_ts, to_ts)` (0.6.0): see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer, name = "audit_verify_integrity")]
#[search_path(pg_catalog, pg_temp)]
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
    // Recorded where the transaction can write; a standby or a read-only transaction
    // (a reporting connection) still verifies.
    if !crate::base::spi_util::read_only() {
        record_run(&r, from, to).or_report();
    }
    tell(&r);
    TableIterator::once((r.checked, r.hash_mismatches, r.signature_mismatches, r.chain_breaks, r.first_bad_id, r.blocks, r.unsealed, r.legacy))
}

/// What the run's counters do not say by themselves: NOTICEs for what was verified
/// another way or could not be checked, WARNINGs for rows that appeared without
/// evidence.
fn tell(r: &Report) {
    if r.legacy > r.original_rows {
        pgrx::notice!(
            "audit_db: {} rows were written before 0.6.0 and verified through their per-organization chains",
            r.legacy - r.original_rows
        );
    }
    if r.original_verified > 0 {
        pgrx::notice!(
            "audit_db: {} rows written by the original application were verified against its own SHA-256 hash",
            r.original_verified
        );
    }
    if r.unchained > 0 {
        pgrx::notice!(
            "audit_db: {} rows carry no integrity evidence audit_db can check (no chain, no seal, no SHA-256 hash of the original application): counted in legacy, not verified",
            r.unchained
        );
    }
    if r.unsealed > 0 {
        pgrx::notice!("audit_db: {} rows are not sealed yet; their signatures cover them", r.unsealed);
    }
    if r.past_horizon > 0 {
        pgrx::warning!(
            "audit_db: {} rows carry no audit_db evidence although they came after its evidence began (written with the trigger off): counted as hash mismatches",
            r.past_horizon
        );
    }
    if r.beyond_recorded > 0 {
        pgrx::warning!(
            "audit_db: {} more rows without audit_db evidence (present, or retired by audit_db) than existed when its evidence began: counted as a chain break",
            r.beyond_recorded
        );
    }
    if r.unverifiable > 0 {
        pgrx::notice!("audit_db: {} rows or blocks could not be fully verified (no key, a key not in the ring, or an original application's hash made before the row was pseudonymized): the run is recorded as INCOMPLETE, not PASSED", r.unverifiable);
    }
}

fn record_run(r: &Report, from: TimestampWithTimeZone, to: TimestampWithTimeZone) -> AuditResult<()> {
    // Fails closed: what could not be checked is not a pass.
    let status = if r.hash_mismatches + r.signature_mismatches + r.chain_breaks > 0 {
        "FAILED"
    } else if r.unverifiable > 0 {
        "INCOMPLETE"
    } else {
        "PASSED"
    };
    Spi::run_with_args(
        &q("INSERT INTO @extschema@.audit_integrity_log (audit_log_id, verification_timestamp, verification_status,
                                          verification_details, verified_by)
         VALUES (coalesce($1::int8, 0), pg_catalog.now(), $2,
                 pg_catalog.jsonb_build_object('from', $3::timestamptz, 'to', $4::timestamptz,
                     'checked', $5::int8, 'hash_mismatches', $6::int8, 'signature_mismatches', $7::int8,
                     'chain_breaks', $8::int8, 'blocks', $9::int8, 'unsealed', $10::int8, 'legacy', $11::int8,
                     'unverifiable', $12::int8), session_user)")?,
        &[
            r.first_bad_id.into(),
            status.into(),
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
/// SECURITY INVOKER: it reads only tables its callers (reader, admin) may SELECT.
#[pg_extern(stable, parallel_safe, name = "audit_integrity_digest")]
#[search_path(pg_catalog, pg_temp)]
fn audit_integrity_digest_v2(upto: default!(Option<TimestampWithTimeZone>, "now()")) -> pgrx::JsonB {
    let upto = upto.ok_or_else(|| AuditError::null_argument("upto")).or_report();
    crate::base::spi_util::read_one::<pgrx::JsonB>(
        &q("SELECT pg_catalog.jsonb_build_object(
                    'format', 'audit_db.digest.v2', 'upto', $1::timestamptz,
                    'blocks', (SELECT pg_catalog.count(*) FROM @extschema@.audit_seal_block WHERE sealed_at <= $1),
                    'head', (SELECT pg_catalog.jsonb_build_object('epoch', epoch, 'block_hash', block_hash, 'rows', rows)
                               FROM @extschema@.audit_seal_block WHERE sealed_at <= $1 ORDER BY epoch DESC LIMIT 1),
                    'rows_sealed', (SELECT coalesce(pg_catalog.sum(rows), 0) FROM @extschema@.audit_seal_block WHERE sealed_at <= $1),
                    'rows_retired', (SELECT coalesce(pg_catalog.sum(rows), 0) FROM @extschema@.audit_seal_retired))").or_report(),
        &[upto.into()],
    )
    .map_err(AuditError::from)
    .or_report()
    .unwrap_or(pgrx::JsonB(serde_json::json!({})))
}
