//! `audit_partition_maintenance()`: the one call to schedule with pg_cron.
//!
//! For every row of `audit_partition_config` it creates the missing partitions, then
//! drops (or detaches) the expired ones. Every partition's DDL runs in its own
//! subtransaction under the row's `lock_timeout`, so a partition it cannot lock in time
//! is reported as `skipped` and left for the next run, and one failing partition never
//! undoes the work done on the others. Creation takes SHARE UPDATE EXCLUSIVE on the
//! parent (ATTACH PARTITION), and SHARE ROW EXCLUSIVE when a DEFAULT partition exists
//! (see `create_partition`); the drops, which PostgreSQL can only do under ACCESS
//! EXCLUSIVE on the parent, run last (see `drop_phase`). A cancel or statement timeout
//! is never taken for a skipped step: it ends the run.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::lock_retry::with_lock_retries;
use audit_db_core::partition::Period;
use crate::partitions::partition::{
    attach_partitions, create_default_partition, create_partition, default_row_periods, detach_and_keep, drop_default_partition,
    drop_tables, expired_partitions, existing_partitions, missing_periods, partition_budget, prepare_partition, Expired, Parent, PartitionConfig,
    OVERDUE,
};
use crate::base::spi_util::qualified;
use crate::base::regclass::Regclass;
use crate::base::spi_util::ext_schema;
use crate::base::subxact::{in_subtransaction, try_in_subtransaction, Caught};
use pgrx::prelude::*;

/// One line of the maintenance report.
#[derive(Debug, Clone)]
pub struct Step {
    pub parent: Option<Regclass>,
    pub action: &'static str,
    pub partition: Option<String>,
    pub detail: Option<String>,
}

impl Step {
    fn new(parent: Option<Regclass>, action: &'static str) -> Step {
        Step { parent, action, partition: None, detail: None }
    }
    fn partition(mut self, name: &str) -> Step {
        self.partition = Some(name.to_string());
        self
    }
    fn detail(mut self, detail: impl Into<String>) -> Step {
        self.detail = Some(detail.into());
        self
    }
}

fn failure_step(parent: Regclass, partition: Option<&str>, caught: &Caught, lock_ms: i64) -> Step {
    let step = if caught.is_lock_timeout() {
        Step::new(Some(parent), "skipped").detail(format!(
            "could not lock within lock_timeout ({lock_ms} ms): {}; the next run retries",
            caught.message
        ))
    } else {
        Step::new(Some(parent), "failed").detail(format!("{}: {}", caught.sqlstate, caught.message))
    };
    match partition {
        Some(p) => step.partition(p),
        None => step,
    }
}

fn set_lock_timeout(ms: i64) -> AuditResult<()> {
    crate::base::spi_util::set_lock_timeout(&format!("{ms}ms"))
}

/// Which part of maintenance a call runs. `All` is one transaction (the function);
/// `CALL audit_maintain()` runs `Create` and `Retain` in two transactions, so that a
/// failure of one never rolls back the other (issue 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    All,
    /// Repairs after a restore, creation, sealing.
    Create,
    /// Drops and detaches.
    Retain,
}

impl Phase {
    fn parse(text: &str) -> AuditResult<Phase> {
        match text {
            "create" => Ok(Phase::Create),
            "retain" => Ok(Phase::Retain),
            _ => Err(AuditError::invalid_parameter(format!("unknown maintenance phase \"{text}\""))
                .hint("Use 'create' (creation and sealing) or 'retain' (drops and detaches).")),
        }
    }
    fn creates(self) -> bool {
        self != Phase::Retain
    }
    fn retains(self) -> bool {
        self != Phase::Create
    }
}

/// Runs one maintenance pass (or one phase of it); see the module documentation.
pub fn run_maintenance(at: Option<TimestampWithTimeZone>, phase: Phase) -> AuditResult<Vec<Step>> {
    // On a standby nothing may write (not even the SPI calls below, which would
    // assign a transaction id): say so before anything else.
    if crate::base::spi_util::in_recovery() {
        return Ok(vec![Step::new(None, "skipped")
            .detail("server is a hot standby; maintenance runs on the primary only")]);
    }
    // An infinite or future reference time is a caller's error, not a per-parent failure.
    crate::partitions::partition::utc_date(at)?;
    crate::partitions::partition::retention_reference(at)?;
    let got_lock = Spi::get_one::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('audit_db.maintenance'))",
    )?
    .unwrap_or(false);
    if !got_lock {
        return Ok(vec![Step::new(None, "skipped")
            .detail("another audit_partition_maintenance() run is in progress")]);
    }
    let mut steps = Vec::new();
    // After a restore the parents lack their indexes until audit_finish_restore()
    // runs; a scheduled maintenance run heals that on its own.
    if phase.creates() {
        match try_in_subtransaction(|| crate::journal::schema_check::finish_restore().or_report()) {
            Ok(created) => steps.extend(created.into_iter().map(|name| {
                Step::new(None, "repaired").partition(&name).detail("index of a partitioned parent recreated after a restore")
            })),
            Err(caught) => steps.push(
                Step::new(None, "failed").detail(format!("{}: {}", caught.sqlstate, caught.message)),
            ),
        }
    }
    let saved_lock_timeout = crate::base::spi_util::lock_timeout()?;
    let schema = ext_schema()?;
    let parents: Vec<(pg_sys::Oid, bool)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            &format!(
                "SELECT parent::oid,
                        EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = parent::oid)
                   FROM {schema}.audit_partition_config ORDER BY parent::text"
            ),
            None,
            &[],
        )? {
            out.push((
                r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                r.get::<bool>(2)?.unwrap_or(false),
            ));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?;

    // Loaded parents and their config, for the drop phase.
    let mut live = Vec::new();
    // Whether a lock that holds writers off until commit is held (see below).
    let mut holding = false;
    for (oid, exists) in parents {
        let rel = Regclass(oid);
        if !exists {
            steps.push(Step::new(Some(rel), "failed").detail(format!(
                "configured parent with OID {} no longer exists; delete its audit_partition_config row",
                oid.to_u32()
            )));
            continue;
        }
        let loaded = try_in_subtransaction(|| {
            let parent = Parent::load(rel).or_report();
            let config = PartitionConfig::load(parent.oid).or_report();
            (parent, config)
        });
        let (parent, config) = match loaded {
            Ok(pc) => pc,
            Err(caught) => {
                steps.push(failure_step(rel, None, &caught, 0));
                continue;
            }
        };
        set_lock_timeout(config.lock_timeout_ms)?;
        let mut parent = parent;
        if phase.creates() {
            if let Some(now) = default_phase(&parent, &config, at, &mut steps) {
                // Its DEFAULT partition came or went: what follows must know (the
                // catalog as this statement's snapshot sees it does not say so yet).
                holding = true;
                parent.default_partition = now;
            }
        }
        // Parents without a DEFAULT partition first: their creation holds no one off.
        if config.auto_create && phase.creates() && parent.default_partition.is_none() {
            let window = lock_window_ms(&config, holding);
            create_phase(&parent, &config, at, window, &mut steps);
        }
        live.push((parent, config));
    }
    // Sealing is part of maintenance (for databases the worker does not serve); a run
    // that wrote blocks is reported, a failure too, never fatal to the rest.
    if phase.creates() && crate::evidence::seal::installed()? {
        let run = try_in_subtransaction(|| crate::evidence::sealer::seal(std::time::Duration::from_millis(200)).or_report());
        match run {
            Ok(r) if r.blocks > 0 => steps.push(
                Step::new(None, "sealed").detail(format!("{} blocks, {} rows", r.blocks, r.rows)),
            ),
            Ok(_) => {}
            Err(caught) => steps.push(Step::new(None, "failed").detail(format!("sealing: {}: {}", caught.sqlstate, caught.message))),
        }
    }
    // Creation into parents with a DEFAULT partition comes after sealing: it holds
    // that parent's writers off (SHARE ROW EXCLUSIVE) until the transaction ends. Once
    // such a lock is held, every later lock gets one attempt, not a window of retries,
    // so writers are never held off while maintenance waits for another lock.
    if phase.creates() {
        // Parents that are not the extension's first: moving their rows runs their
        // owner's triggers, which must not run while audit_log's writers are held off
        // (issue 25: a trigger that slept held every audit insert for 17 s).
        let mut with_default: Vec<&(Parent, PartitionConfig)> =
            live.iter().filter(|(p, c)| c.auto_create && p.default_partition.is_some()).collect();
        with_default.sort_by_key(|(p, _)| p.member);
        for (parent, config) in with_default {
            set_lock_timeout(config.lock_timeout_ms)?;
            let window = lock_window_ms(config, holding);
            holding |= create_phase(parent, config, at, window, &mut steps);
        }
    }
    // Drops come last: they are the only DDL here that takes an ACCESS EXCLUSIVE lock
    // on a parent, held until the transaction ends right after them (only the
    // last_run bookkeeping below comes between).
    if phase.retains() {
        drop_phase(&live, at, holding, &mut steps)?;
    }
    crate::base::spi_util::set_lock_timeout(&saved_lock_timeout)?;

    for (parent, _) in &live {
        let rel = Regclass(parent.oid);
        let mine: Vec<&Step> = steps.iter().filter(|s| s.parent == Some(rel)).collect();
        let count = |a: &str| mine.iter().filter(|s| s.action == a).count();
        let skipped = count("skipped") + count("overdue");
        let summary = match phase {
            Phase::All => format!(
                "created {}, dropped {}, detached {}, skipped {skipped}, failed {}",
                count("created"),
                count("dropped"),
                count("detached"),
                count("failed")
            ),
            Phase::Create => format!("creation: created {}, skipped {skipped}, failed {}", count("created"), count("failed")),
            Phase::Retain => format!(
                "retention: dropped {}, detached {}, skipped {skipped}, failed {}",
                count("dropped"),
                count("detached"),
                count("failed")
            ),
        };
        Spi::run_with_args(
            &format!(
                "UPDATE {schema}.audit_partition_config
                    SET last_run_at = pg_catalog.now(), last_run_result = $2
                  WHERE parent = $1"
            ),
            &[rel.into(), summary.into()],
        )?;
    }
    let failed = steps.iter().filter(|s| s.action == "failed").count();
    if failed > 0 {
        pgrx::warning!("audit_db: partition maintenance had {failed} failed step(s); see its result rows");
    }
    Ok(steps)
}

/// The window of lock attempts for DDL on one parent: its configured lock_timeout,
/// or a single attempt once maintenance holds a lock that holds writers off
/// (`holding`), so that those writers never wait while maintenance waits for another
/// lock.
fn lock_window_ms(config: &PartitionConfig, holding: bool) -> i64 {
    if holding {
        crate::base::lock_retry::attempt_ms()
    } else {
        config.lock_timeout_ms
    }
}

/// A failed step of `rel` (for `partition`); a lock timeout says how it was tried.
fn lock_failure(rel: Regclass, partition: Option<&str>, caught: &Caught, how: &str, window_ms: i64) -> Step {
    let step = failure_step(rel, partition, caught, window_ms);
    if caught.is_lock_timeout() {
        step.detail(format!("could not lock ({how}): {}; a later run retries", caught.message))
    } else {
        step
    }
}

/// Runs `f` in lock attempts within `window_ms` (`with_lock_retries`); a failure is
/// reported as a step for `partition` and gives None.
fn attempt_step<R>(
    rel: Regclass,
    window_ms: i64,
    partition: Option<&str>,
    steps: &mut Vec<Step>,
    f: impl FnMut() -> R,
) -> Option<R> {
    let attempts = with_lock_retries(window_ms, f);
    let how = attempts.describe(window_ms);
    match attempts.result {
        Ok(r) => Some(r),
        Err(caught) => {
            steps.push(lock_failure(rel, partition, &caught, &how, window_ms));
            None
        }
    }
}

/// Brings `parent`'s DEFAULT partition in line with `default_partition` (issue 19):
/// false = `remove_default`; true = one is created when missing; NULL = left as it
/// is. Returns the parent's new DEFAULT partition (`Some(None)`: dropped) when it
/// changed it; its locks then hold writers off until commit.
fn default_phase(
    parent: &Parent,
    config: &PartitionConfig,
    at: Option<TimestampWithTimeZone>,
    steps: &mut Vec<Step>,
) -> Option<Option<String>> {
    let rel = Regclass(parent.oid);
    match (config.default_partition, &parent.default_partition) {
        (Some(false), Some(default_name)) => {
            // Without its DEFAULT partition a parent refuses every row no partition
            // takes: never while creation is off (issue 25: a configuration must not
            // stop the log); otherwise `remove_default` decides.
            if !config.auto_create {
                steps.push(Step::new(Some(rel), "skipped").partition(default_name).detail(
                    "DEFAULT partition kept (default_partition = false): auto_create is off, so it is the only place for rows past the last partition",
                ));
                return None;
            }
            remove_default(parent, config, default_name, at, steps).then_some(None)
        }
        (Some(true), None) if config.auto_create => {
            let name = attempt_step(rel, config.lock_timeout_ms, None, steps, || {
                create_default_partition(parent).or_report()
            })?;
            steps.push(
                Step::new(Some(rel), "default_created")
                    .partition(&name)
                    .detail("DEFAULT partition created (default_partition = true)"),
            );
            Some(Some(name))
        }
        // audit_log and error_log with creation off and no DEFAULT partition would
        // refuse every event once the last partition ends: they get one back.
        (_, None) if !config.auto_create && parent.member => {
            let name = attempt_step(rel, config.lock_timeout_ms, None, steps, || {
                create_default_partition(parent).or_report()
            })?;
            steps.push(Step::new(Some(rel), "default_created").partition(&name).detail(
                "DEFAULT partition created: auto_create is off, so it is the only place for events past the last partition",
            ));
            Some(Some(name))
        }
        _ => None,
    }
}

/// The DEFAULT partition's rows go into partitions of their own (created here), the
/// partitions ahead are created, then the empty DEFAULT partition is dropped: from then
/// on creation takes only SHARE UPDATE EXCLUSIVE on the parent and never waits for a
/// reader (pg_dump included). If the partitions ahead cannot all be made in this run
/// (the lock table's bounds, `partition_budget`), the DEFAULT partition stays: without
/// it, rows past the last partition would be refused. Lock attempts as for every
/// other DDL here. Returns whether it was dropped.
fn remove_default(
    parent: &Parent,
    config: &PartitionConfig,
    default_name: &str,
    at: Option<TimestampWithTimeZone>,
    steps: &mut Vec<Step>,
) -> bool {
    let rel = Regclass(parent.oid);
    let lock_ms = config.lock_timeout_ms;
    let placed = try_in_subtransaction(|| {
        let (starts, _unplaceable) = default_row_periods(parent, config.interval).or_report();
        let mut periods = Vec::new();
        for start in starts {
            periods.extend(missing_periods(parent, config.interval, 0, Some(start)).or_report());
        }
        let ahead: Vec<Period> = missing_periods(parent, config.interval, config.premake, at)
            .or_report()
            .into_iter()
            .filter(|p| !periods.iter().any(|q: &Period| q.name == p.name))
            .collect();
        let budget = partition_budget(parent).or_report();
        let room = budget.total.saturating_sub(existing_partitions(parent).or_report().len());
        let fits = periods.len() + ahead.len() <= budget.per_run.min(room);
        (periods, ahead, fits)
    });
    let (periods, ahead) = match placed {
        Ok((periods, ahead, true)) => (periods, ahead),
        Ok((periods, ahead, false)) => {
            steps.push(Step::new(Some(rel), "skipped").partition(default_name).detail(format!(
                "DEFAULT partition kept (default_partition = false): {} partitions it needs first are more than the lock table allows now",
                periods.len() + ahead.len()
            )));
            return false;
        }
        Err(caught) => {
            steps.push(lock_failure(rel, Some(default_name), &caught, "", lock_ms));
            return false;
        }
    };
    for period in ahead {
        let Some(_) = attempt_step(rel, lock_ms, Some(&period.name), steps, || {
            create_partition(parent, &period).or_report()
        }) else {
            return false;
        };
        steps.push(
            Step::new(Some(rel), "created")
                .partition(&period.name)
                .detail(format!("[{}, {})", period.from_literal(), period.to_literal())),
        );
    }
    for period in periods {
        // The DEFAULT partition stays until every row has a partition.
        let Some(moved) = attempt_step(rel, lock_ms, Some(&period.name), steps, || {
            create_partition(parent, &period).or_report()
        }) else {
            return false;
        };
        steps.push(Step::new(Some(rel), "created").partition(&period.name).detail(format!(
            "[{}, {}); moved {moved} rows from the DEFAULT partition, which goes (default_partition = false)",
            period.from_literal(),
            period.to_literal()
        )));
    }
    if attempt_step(rel, lock_ms, Some(default_name), steps, || drop_default_partition(parent).or_report()).is_none() {
        return false;
    }
    steps.push(
        Step::new(Some(rel), "default_dropped")
            .partition(default_name)
            .detail("the empty DEFAULT partition was dropped (default_partition = false)"),
    );
    true
}

/// Creates the missing partitions of `parent`: every table is built first
/// (`prepare_partition`, no lock that holds anyone off), then one run of lock attempts
/// (within `window_ms`) moves rows out of DEFAULT and attaches them all. If the
/// attempts fail, the built tables go too (one subtransaction). Returns whether a lock
/// that holds writers off until commit was taken (a parent with a DEFAULT partition).
fn create_phase(
    parent: &Parent,
    config: &PartitionConfig,
    at: Option<TimestampWithTimeZone>,
    window_ms: i64,
    steps: &mut Vec<Step>,
) -> bool {
    let rel = Regclass(parent.oid);
    let planned = try_in_subtransaction(|| {
        let periods = missing_periods(parent, config.interval, config.premake, at).or_report();
        let existing = existing_partitions(parent).or_report().len();
        (periods, existing, partition_budget(parent).or_report())
    });
    let periods = match planned {
        Ok((p, _, _)) if p.is_empty() => return false,
        Ok((mut p, existing, budget)) => {
            // The nearest periods first; the others in the next runs, or never when
            // the parent would outgrow the lock table.
            let room = budget.total.saturating_sub(existing);
            let now = p.len().min(budget.per_run).min(room);
            if p.len() > now {
                let later = p.split_off(now);
                steps.push(Step::new(Some(rel), "deferred").detail(if now == room {
                    format!(
                        "{now} of {} missing partitions created: the lock table allows {} partitions of this parent in all; raise max_locks_per_transaction for more (premake is {})",
                        now + later.len(),
                        budget.total,
                        config.premake
                    )
                } else {
                    format!(
                        "{now} of {} missing partitions created in this run (an eighth of the lock table); the rest, from {}, in the next runs",
                        now + later.len(),
                        later[0].name
                    )
                }));
            }
            if p.is_empty() {
                return false;
            }
            p
        }
        Err(caught) => {
            steps.push(failure_step(rel, None, &caught, config.lock_timeout_ms));
            return false;
        }
    };
    let how = std::cell::RefCell::new(String::new());
    let created = in_subtransaction(|| {
        for period in &periods {
            prepare_partition(parent, period).or_report();
        }
        let attempts = with_lock_retries(window_ms, || attach_partitions(parent, &periods).or_report());
        *how.borrow_mut() = attempts.describe(window_ms);
        attempts.result
    });
    match created {
        Ok(moved) => {
            for (period, moved) in periods.iter().zip(moved) {
                let range = format!("[{}, {})", period.from_literal(), period.to_literal());
                steps.push(Step::new(Some(rel), "created").partition(&period.name).detail(if moved > 0 {
                    format!("{range}; moved {moved} rows from the DEFAULT partition")
                } else {
                    range
                }));
            }
            parent.default_partition.is_some()
        }
        Err(caught) => {
            for period in &periods {
                steps.push(lock_failure(rel, Some(&period.name), &caught, &how.borrow(), config.lock_timeout_ms));
            }
            false
        }
    }
}

/// The expired partitions of one parent, to drop (or detach, with `keep_table`).
struct Retire<'a> {
    parent: &'a Parent,
    rel: Regclass,
    window_ms: i64,
    keep_table: bool,
    expired: Vec<Expired>,
}

/// One attempt at retention for `plans`: locks each parent (ONLY, ACCESS EXCLUSIVE),
/// then its expired partitions, then drops them all in one `DROP TABLE` and detaches
/// the `keep_table` ones. Lock order: parent, then partitions, as PostgreSQL's own DROP
/// and every statement through the parent lock them (the other order would deadlock
/// with a reader or writer of the parent waiting for a partition). ONLY: LOCK TABLE
/// would otherwise lock every partition, and a session busy with one that is not
/// expired would hold up the drops. Runs inside `with_lock_retries`: a lock it cannot
/// get rolls the whole attempt back, so no lock is kept while maintenance waits.
fn retire_attempt(plans: &[Retire<'_>]) -> AuditResult<Vec<Step>> {
    for plan in plans {
        Spi::run(&format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE", plan.parent.qualified()))?;
        for e in &plan.expired {
            Spi::run(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", qualified(&e.schema, &e.name)))?;
        }
    }
    let drops: Vec<(String, String)> = plans
        .iter()
        .filter(|p| !p.keep_table)
        .flat_map(|p| p.expired.iter().map(|e| (e.schema.clone(), e.name.clone())))
        .collect();
    // (One statement for all: CASCADE only when every parent is the extension's; a
    // mixed attempt that fails is retried per parent by `drop_phase`.)
    drop_tables(&drops, plans.iter().all(|p| p.parent.member))?;
    let mut steps = Vec::new();
    for plan in plans {
        for e in &plan.expired {
            steps.push(if plan.keep_table {
                let kept = detach_and_keep(plan.parent, &e.schema, &e.name)?;
                Step::new(Some(plan.rel), "detached").partition(&e.name).detail(format!("detached and kept as {kept}"))
            } else {
                Step::new(Some(plan.rel), "dropped").partition(&e.name).detail("dropped")
            });
        }
    }
    Ok(steps)
}

/// Reports the partitions of `plan` that could not be retired. A partition expired for
/// longer than `OVERDUE` is reported as `overdue`, with a WARNING: monitoring can alert
/// on it.
fn not_retired(plan: &Retire<'_>, caught: &Caught, how: &str, steps: &mut Vec<Step>) {
    for e in &plan.expired {
        let mut step = lock_failure(plan.rel, Some(&e.name), caught, how, plan.window_ms);
        if caught.is_lock_timeout() {
            if e.overdue {
                step.action = "overdue";
                pgrx::warning!(
                    "audit_db: partition \"{}\" is more than {OVERDUE} past its retention and still could not be locked: {}",
                    e.name,
                    caught.message
                );
            }
        }
        steps.push(step);
    }
}

/// Drops or detaches the expired partitions of every parent: all parents in one
/// attempt (one `DROP TABLE`), retried with backoff within the smallest window; if
/// that window is spent, each parent once more on its own (one attempt each, so a
/// parent already locked is not held while another one's locks are awaited).
fn drop_phase(
    live: &[(Parent, PartitionConfig)],
    at: Option<TimestampWithTimeZone>,
    holding: bool,
    steps: &mut Vec<Step>,
) -> AuditResult<()> {
    let mut plans = Vec::new();
    // Parents that are not the extension's first: whatever their owner's code does
    // (a DETACH runs foreign-key checks) happens before audit_db's own parents are
    // locked, so it cannot hold their writers off (issue 25).
    let mut ordered: Vec<&(Parent, PartitionConfig)> = live.iter().collect();
    ordered.sort_by_key(|(p, _)| p.member);
    for (parent, config) in ordered {
        let Some(retention) = config.retention.filter(|_| config.auto_drop) else {
            continue;
        };
        let rel = Regclass(parent.oid);
        match try_in_subtransaction(|| expired_partitions(parent, retention, at).or_report()) {
            Ok(expired) if expired.is_empty() => {}
            Ok(expired) => plans.push(Retire {
                parent,
                rel,
                window_ms: lock_window_ms(config, holding),
                keep_table: config.keep_table,
                expired,
            }),
            Err(caught) => steps.push(failure_step(rel, None, &caught, config.lock_timeout_ms)),
        }
    }
    let Some(window_ms) = plans.iter().map(|p| p.window_ms).min() else {
        return Ok(());
    };
    let all = with_lock_retries(window_ms, || retire_attempt(&plans).or_report());
    let how = all.describe(window_ms);
    match all.result {
        Ok(done) => steps.extend(done),
        // One parent's failure (a lock not had in time, or an error of its own: a view
        // of the owner's on an expired partition) must not hold back the others'
        // retention, audit_log's least of all (issue 25): each gets an attempt alone.
        Err(_) if plans.len() > 1 => {
            for plan in &plans {
                let one = with_lock_retries(crate::base::lock_retry::attempt_ms(), || retire_attempt(std::slice::from_ref(plan)).or_report());
                match one.result {
                    Ok(done) => steps.extend(done),
                    Err(caught) => not_retired(plan, &caught, &how, steps),
                }
            }
        }
        Err(caught) => {
            for plan in &plans {
                not_retired(plan, &caught, &how, steps);
            }
        }
    }
    Ok(())
}

/// `audit_partition_maintenance(reference_time)`: see docs/reference.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_partition_maintenance(
    reference_time: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(parent, Option<Regclass>),
        name!(action, String),
        name!(partition, Option<String>),
        name!(detail, Option<String>),
    ),
> {
    let steps = run_maintenance(reference_time, Phase::All).or_report();
    TableIterator::new(
        steps.into_iter().map(|s| (s.parent, s.action.to_string(), s.partition, s.detail)),
    )
}

/// `audit_partition_maintenance_phase(phase, reference_time)`: one phase of
/// maintenance ('create' or 'retain'), for `CALL audit_maintain()`, which commits
/// between the two.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_partition_maintenance_phase(
    phase: Option<&str>,
    reference_time: default!(Option<TimestampWithTimeZone>, "now()"),
) -> TableIterator<
    'static,
    (
        name!(parent, Option<Regclass>),
        name!(action, String),
        name!(partition, Option<String>),
        name!(detail, Option<String>),
    ),
> {
    let phase = phase.ok_or_else(|| AuditError::null_argument("phase")).and_then(Phase::parse).or_report();
    let steps = run_maintenance(reference_time, phase).or_report();
    TableIterator::new(
        steps.into_iter().map(|s| (s.parent, s.action.to_string(), s.partition, s.detail)),
    )
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn rows(query: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(query, None, &[])
                .expect("query runs")
                .map(|r| r.get::<String>(1).expect("text column").unwrap_or_default())
                .collect()
        })
    }

    #[pg_test]
    fn maintenance_creates_drops_detaches_and_records_the_run() {
        Spi::run(
            "UPDATE audit_partition_config SET retention = '2 months', premake = 1
              WHERE parent = 'audit_log'::regclass;
             UPDATE audit_partition_config SET auto_create = false, auto_drop = false
              WHERE parent = 'error_log'::regclass",
        )
        .expect("config");
        assert_eq!(
            rows("SELECT audit_create_partitions('audit_log', 0, '2021-01-05')"),
            ["audit_log_2021_01"]
        );
        let steps = rows(
            "SELECT action || ' ' || partition FROM audit_partition_maintenance('2021-04-01 00:00:00+00')",
        );
        // Created first (April and one ahead), then January dropped: it ends 2021-02-01,
        // exactly the cutoff 2021-04-01 - 2 months.
        assert_eq!(
            steps,
            ["created audit_log_2021_04", "created audit_log_2021_05", "dropped audit_log_2021_01"]
        );
        assert_eq!(
            rows("SELECT last_run_result FROM audit_partition_config WHERE parent = 'audit_log'::regclass"),
            ["created 2, dropped 1, detached 0, skipped 0, failed 0"]
        );
        assert!(rows("SELECT * FROM audit_partition_maintenance('2021-04-01 00:00:00+00')").is_empty());

        // keep_table: detached and renamed. (One test function: pgrx runs tests in
        // parallel sessions, and a second concurrent maintenance run would be skipped.)
        Spi::run("SELECT audit_create_partitions('error_log', 0, '2020-03-03')").expect("create");
        Spi::run(
            "UPDATE audit_partition_config SET retention = '1 day', keep_table = true, auto_create = false, auto_drop = true
              WHERE parent = 'error_log'::regclass",
        )
        .expect("config");
        let steps = rows(
            "SELECT action || ' ' || partition || ' ' || detail FROM audit_partition_maintenance('2020-04-02')
              WHERE parent = 'error_log'::regclass",
        );
        assert_eq!(steps, ["detached error_log_2020_03 detached and kept as error_log_2020_03_detached"]);
        assert_eq!(
            rows("SELECT relispartition::text FROM pg_class WHERE relname = 'error_log_2020_03_detached'"),
            ["false"]
        );
    }
}
