//! The sealer: closes the open epoch, waits for the transactions still writing into
//! it, and writes one signed, chained block per epoch (protocol in `seal.rs`). Runs as
//! the background worker `audit_db sealer` (database `audit_db.sealer_database`, every
//! `audit_db.seal_interval` ms), as `audit_seal()`, and inside
//! `audit_partition_maintenance()` and every function that removes rows.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::{signed_by, signing_ring};
use crate::evidence::seal::{ensure_floor_now, open_epochs, shared, tally, EpochSums};
use audit_db_core::crypto::KeyRing;
use audit_db_core::integrity::{sign, GENESIS};
use audit_db_core::seal::{block_hash, element, Limbs};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::ffi::CString;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

pub static SEALER_DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static SEAL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(200);

/// `audit_db.seal_interval` always; `audit_db.sealer_database` (PGC_POSTMASTER) only
/// while preloading: PostgreSQL refuses postmaster settings defined after start-up.
pub fn register_gucs() {
    // SAFETY: reads a postmaster global.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        register_database_guc();
    }
    register_interval_guc();
}

fn register_database_guc() {
    GucRegistry::define_string_guc(
        c"audit_db.sealer_database",
        c"Database whose audit_log the audit_db sealer worker seals.",
        c"Other databases are sealed by audit_seal() or audit_partition_maintenance(), e.g. from pg_cron.",
        &SEALER_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

fn register_interval_guc() {
    GucRegistry::define_int_guc(
        c"audit_db.seal_interval",
        c"Milliseconds between two runs of the audit_db sealer worker (0 = the worker only idles).",
        c"Bounds the seal lag: a committed row is sealed within about one interval.",
        &SEAL_INTERVAL_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
}

/// What one sealing run did.
#[derive(Debug, Default, Clone)]
pub struct SealRun {
    pub blocks: i64,
    pub rows: i64,
    pub sealed_upto: i64,
    pub open_writers: i64,
    /// Rows left out of their block: no valid signature under a configured key.
    pub rejected: i64,
    pub status: &'static str,
}


/// An arbitrary constant advisory lock key: one sealer per database at a time.
const SEAL_LOCK: i64 = 0x6175_6469_745f_7365;

/// Seals every closed epoch whose writers are gone, waiting up to `wait` for them.
pub fn seal(wait: Duration) -> AuditResult<SealRun> {
    // SAFETY: reads backend state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Ok(SealRun { status: "standby: nothing to do", ..Default::default() });
    }
    // SAFETY: reads backend state.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(AuditError::feature_not_supported("audit_seal() needs READ COMMITTED")
            .detail("Sealing must see rows committed while it waited; a transaction snapshot cannot.")
            .hint("Call it outside a REPEATABLE READ or SERIALIZABLE transaction."));
    }
    let ext = crate::base::spi_util::ext_schema()?;
    // An archive's blocks are the primary's, replicated; one of its own would collide.
    if crate::base::archive_role::subscribes(&ext)? {
        return Ok(SealRun { status: "archive: blocks come from the primary", ..Default::default() });
    }
    let locked = Spi::get_one_with_args::<bool>("SELECT pg_catalog.pg_try_advisory_xact_lock($1)", &[SEAL_LOCK.into()])?
        .unwrap_or(false);
    if !locked {
        return Ok(SealRun { status: "busy: another sealer runs", ..Default::default() });
    }
    // Lock order and why: the sums read every partition on one snapshot, and that
    // snapshot must agree with the list of partitions. Creating a partition moves rows
    // out of DEFAULT into a table it then ATTACHes; a sealer whose partition list
    // predates that transaction's commit but whose snapshot follows it sees the rows in
    // neither place (found by the load test). SHARE UPDATE EXCLUSIVE on the parent
    // alone (ONLY) conflicts with ATTACH and with creation's SHARE ROW EXCLUSIVE, not
    // with writers' ROW EXCLUSIVE: writers never wait for the sealer. Taken first,
    // before anything reads audit_log (the floor below reads every partition): a
    // partition locked before the parent would deadlock with maintenance, which locks
    // the parent and then the DEFAULT partition (found by the load test). Bounded by
    // lock_timeout, a busy parent makes this run "busy" and the next one seals.
    if !lock_parent(&ext)? {
        return Ok(SealRun { status: "busy: partition maintenance holds audit_log", ..Default::default() });
    }
    let sh = shared()?;
    ensure_floor_now(sh)?;
    let (last, mut prev) = last_block(&ext)?;
    // Close the open epoch: from here on writers tag later epochs.
    let target = sh.closed.fetch_add(1, SeqCst) + 1;
    let deadline = Instant::now() + wait;
    let (upto, open) = loop {
        let open = open_epochs(sh, target);
        match open.iter().min() {
            None => break (target, 0),
            Some(&oldest) if Instant::now() >= deadline || crate::evidence::seal::own_epoch_is(sh, oldest) => {
                break (oldest - 1, open.len() as i64)
            }
            Some(_) => {
                // SAFETY: a plain sleep; interrupts are checked right after.
                unsafe { pg_sys::pg_usleep(500) };
                pgrx::check_for_interrupts!();
            }
        }
    };
    if upto <= last {
        return Ok(SealRun { sealed_upto: last, open_writers: open, status: "nothing to seal", ..Default::default() });
    }
    // A configured key that cannot be read: no block is written unsigned (it would
    // verify as a chain break later); the next run seals once the key is back.
    let ring = match signing_ring() {
        Ok(ring) => ring,
        Err(e) => {
            pgrx::warning!("audit_db: sealing postponed: {}", e.message);
            return Ok(SealRun { sealed_upto: last, open_writers: open, status: "waiting for the key", ..Default::default() });
        }
    };
    let mut run = SealRun { sealed_upto: upto, open_writers: open, status: "sealed", ..Default::default() };
    let epochs = epoch_sums(&ext, last, upto, ring.as_deref(), &mut run.rejected)?;
    if run.rejected > 0 {
        pgrx::warning!("audit_db: {} rows carry no valid signature and were left out of their blocks", run.rejected);
    }
    let key = ring.as_ref().map(|r| r.current());
    for (epoch, (rows, sum)) in &epochs {
        let hash = block_hash(*epoch, *rows, sum, &prev);
        Spi::run_with_args(
            &format!(
                "INSERT INTO {ext}.audit_seal_block (epoch, rows, sum, prev_hash, block_hash, signature)
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            &[(*epoch).into(), (*rows).into(), sum.hex().into(), prev.as_str().into(), hash.as_str().into(),
              key.map(|k| sign(k, &hash)).into()],
        )?;
        prev = hash;
        run.blocks += 1;
        run.rows += rows;
    }
    if epochs.is_empty() {
        run.status = "nothing to seal";
    }
    Ok(run)
}

/// SHARE UPDATE EXCLUSIVE on audit_log alone, waiting at most 2 s (or a shorter
/// lock_timeout the caller set); false when it was not granted in time.
fn lock_parent(ext: &str) -> AuditResult<bool> {
    let saved = crate::base::spi_util::lock_timeout()?;
    crate::base::spi_util::set_lock_timeout(if saved == "0" || saved.is_empty() { "2s" } else { &saved })?;
    let sql = format!("LOCK TABLE ONLY {ext}.audit_log IN SHARE UPDATE EXCLUSIVE MODE");
    let locked = crate::base::subxact::try_in_subtransaction(|| Spi::run(&sql).map_err(AuditError::from).or_report());
    crate::base::spi_util::set_lock_timeout(&saved)?;
    match locked {
        Ok(()) => Ok(true),
        Err(caught) if caught.is_lock_timeout() => Ok(false),
        Err(caught) => Err(AuditError::internal(format!("sealing could not lock audit_log: {}: {}", caught.sqlstate, caught.message))),
    }
}

/// The newest block's epoch and hash (0 and the genesis hash before the first).
fn last_block(ext: &str) -> AuditResult<(i64, String)> {
    Ok(Spi::connect(|client| {
        let t = client.select(
            &format!("SELECT epoch, block_hash FROM {ext}.audit_seal_block ORDER BY epoch DESC LIMIT 1"),
            None,
            &[],
        )?;
        match t.into_iter().next() {
            Some(r) => Ok::<_, pgrx::spi::Error>((r.get::<i64>(1)?.unwrap_or(0), r.get::<String>(2)?.unwrap_or_default())),
            None => Ok((0, GENESIS.to_string())),
        }
    })?)
}

/// Per epoch in (after, upto]: rows present plus rows already retired, and their sum.
fn epoch_sums(ext: &str, after: i64, upto: i64, ring: Option<&KeyRing>, rejected: &mut i64) -> AuditResult<EpochSums> {
    let mut epochs = EpochSums::new();
    // The sums must see every row committed while we waited for the writers.
    crate::base::spi_util::with_fresh_snapshot(|| Ok(epoch_sums_now(ext, after, upto, ring, rejected, &mut epochs)?))?;
    Ok(epochs)
}

fn epoch_sums_now(
    ext: &str,
    after: i64,
    upto: i64,
    ring: Option<&KeyRing>,
    rejected: &mut i64,
    epochs: &mut EpochSums,
) -> Result<(), pgrx::spi::Error> {
    Spi::connect_mut(|client| {
        // One statement, so one snapshot for the rows and the retirements: a partition
        // dropped between two statements would count both as present and as retired.
        for r in client.update(
            &format!(
                "SELECT false, seal_epoch, row_hash, signature, NULL::int8, NULL::text
                   FROM {ext}.audit_log WHERE seal_epoch > $1 AND seal_epoch <= $2
                 UNION ALL
                 SELECT true, epoch, NULL, NULL, rows, sum
                   FROM {ext}.audit_seal_retired WHERE epoch > $1 AND epoch <= $2"
            ),
            None,
            &[after.into(), upto.into()],
        )? {
            let Some(e) = r.get::<i64>(2)? else { continue };
            if r.get::<bool>(1)?.unwrap_or(false) {
                let (Some(n), Some(sum)) = (r.get::<i64>(5)?, r.get::<String>(6)?) else { continue };
                tally(epochs, e, n, &Limbs::parse(&sum).unwrap_or_default());
                continue;
            }
            let Some(h) = r.get::<String>(3)? else { continue };
            let sig = r.get::<String>(4)?;
            // With a key configured, only rows the trigger signed are sealed: a row put
            // in with the triggers disabled stays outside every block, and verification
            // reports its epoch as broken.
            if let Some(ring) = ring {
                if !sig.as_deref().is_some_and(|s| signed_by(ring, &h, s)) {
                    *rejected += 1;
                    continue;
                }
            }
            tally(epochs, e, 1, &element(&h, sig.as_deref()));
        }
        Ok::<_, pgrx::spi::Error>(())
    })
}

/// `audit_seal(wait_ms)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_seal(
    wait_ms: default!(Option<i32>, 1000),
) -> TableIterator<
    'static,
    (name!(blocks, i64), name!(rows, i64), name!(sealed_upto, i64), name!(open_writers, i64), name!(status, String)),
> {
    let wait = wait_ms.ok_or_else(|| AuditError::null_argument("wait_ms")).or_report();
    if !(0..=600_000).contains(&wait) {
        AuditError::invalid_parameter(format!("wait_ms must be between 0 and 600000, not {wait}"))
            .hint("Pass how long to wait for open transactions, in milliseconds.")
            .report();
    }
    let r = seal(Duration::from_millis(wait as u64)).or_report();
    TableIterator::once((r.blocks, r.rows, r.sealed_upto, r.open_writers, r.status.to_string()))
}

// ------------------------------------------------------------ background worker

/// Registers the background worker `audit_db sealer`; `_PG_init` calls it while
/// preloading, after `seal::init_preloaded`.
pub fn register() {
    BackgroundWorkerBuilder::new("audit_db sealer")
        .set_type("audit_db sealer")
        .set_function("audit_db_sealer_main")
        .set_library("audit_db")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn audit_db_sealer_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = SEALER_DATABASE
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres".to_string());
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    loop {
        let interval = SEAL_INTERVAL_MS.get();
        let nap = if interval <= 0 { 10_000 } else { interval as u64 };
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(nap))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: re-reads postgresql.conf in this process, as PostgreSQL's own workers do.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if interval <= 0 {
            continue;
        }
        // A worker sets its own statement start time (PostgreSQL does it for client
        // statements only); base/keys.rs re-checks the key file once per statement by it,
        // so without this a reloaded key would never be seen here.
        // SAFETY: a plain update of this backend's transaction bookkeeping, outside a transaction.
        unsafe { pg_sys::SetCurrentStatementStartTimestamp() };
        BackgroundWorker::transaction(|| {
            // The worker's session has the default search_path ("$user", public): no
            // name of audit_db's may resolve there (issue 25).
            let pinned = Spi::run("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)");
            if let Err(e) = pinned {
                pgrx::warning!("audit_db sealer: could not pin search_path: {e}");
                return;
            }
            let ready = Spi::get_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                                  JOIN pg_catalog.pg_class c ON c.relnamespace = e.extnamespace
                                 WHERE e.extname = 'audit_db' AND c.relname = 'audit_seal_block')",
            )
            .ok()
            .flatten()
            .unwrap_or(false);
            if ready {
                if let Err(e) = seal(Duration::from_millis(100)) {
                    pgrx::warning!("audit_db sealer: {}", e.message);
                }
            }
        });
    }
}
