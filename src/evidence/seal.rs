//! Tamper evidence, version 2 (0.6.0): no writer ever waits for another.
//!
//! * The BEFORE INSERT trigger `audit_log_seal_trigger` hashes the row
//!   (`audit_db_core::seal::row_hash`), signs the hash and tags the row with the
//!   current *epoch*. It touches no table and takes no lock: the only shared state is
//!   one counter read and this backend's own slot in shared memory.
//! * The sealer (`audit_seal()`, the background worker `audit_db sealer` and
//!   `audit_partition_maintenance()`) closes the open epoch, waits until no
//!   transaction still writes into a closed epoch, then writes one signed block per
//!   epoch: row count and MSet-Add-Hash sum of the rows' signatures, chained to the
//!   previous block. A committed row that is later deleted, edited, added or moved to
//!   another epoch breaks its row hash, its signature or its block's count and sum.
//! * Rows leaving through audit_db (retention, erasure, dropped or detached partitions)
//!   are subtracted into `audit_seal_retired`, so `present + retired = sealed` per block.
//!
//! Epoch protocol (lock-free; all atomics SeqCst):
//! writer: slot := closed + 1; if closed changed meanwhile, retry; the row's epoch is
//! the slot, kept until the transaction ends (xact callback clears it).
//! sealer: closed := closed + 1 (= E); then waits until no slot holds 0 < e <= E.
//! A writer that tagged e <= E stored its slot before the sealer's increment (else it
//! would have re-read closed and retried), so the sealer sees it until it commits or
//! aborts: no row can join an epoch after its block is written.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::{personal_details_keys, signed_by};
use audit_db_core::crypto::KeyRing;
use audit_db_core::integrity::sign;
use audit_db_core::seal::{self as core_seal, element, EventV2, Limbs};
use pgrx::prelude::*;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};

// ------------------------------------------------------------ shared memory

/// Slots for backends (indexed by PGPROC position); more than any max_connections we
/// expect. A backend past it gets a clear error rather than an untracked epoch.
const MAX_SLOTS: usize = 8192;

#[repr(C)]
pub struct SealShared {
    /// The newest closed epoch; writers tag `closed + 1`.
    pub closed: AtomicI64,
    /// Per backend: the epoch its open transaction writes into, 0 = none.
    slots: [AtomicI64; MAX_SLOTS],
}

// SAFETY: only atomics, no pointers: valid in every process that maps the segment.
unsafe impl pgrx::PGRXSharedMemory for SealShared {}

impl SealShared {
    fn new() -> Self {
        SealShared { closed: AtomicI64::new(0), slots: [const { AtomicI64::new(0) }; MAX_SLOTS] }
    }
}

// SAFETY: the name is unique to audit_db.
static SEAL: pgrx::PgAtomic<SealShared> = unsafe { pgrx::PgAtomic::new(c"audit_db seal epochs v2") };
/// Set in the postmaster's `_PG_init` when preloaded; inherited by every backend.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// From `_PG_init` when loaded through shared_preload_libraries: shared memory and the
/// transaction callback that clears this backend's slot (`_PG_init` then registers the
/// sealer worker).
pub fn init_preloaded() {
    pgrx::pg_shmem_init!(SEAL = SealShared::new());
    PRELOADED.store(true, SeqCst);
    // SAFETY: registers a permanent callback in the postmaster, inherited by forks.
    unsafe { pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut()) };
}

pub fn shared() -> AuditResult<&'static SealShared> {
    if !PRELOADED.load(SeqCst) {
        return Err(AuditError::object_not_in_prerequisite_state(
            "audit_db is not loaded through shared_preload_libraries",
        )
        .detail("Tamper evidence keeps its epochs in shared memory.")
        .hint("Add audit_db to shared_preload_libraries and restart the server."));
    }
    Ok(SEAL.get())
}

/// This process's number among PostgreSQL's PGPROCs (what PostgreSQL itself uses to
/// index per-backend arrays). Not pointer arithmetic over `allProcs`: a PGPROC size that
/// differs between Rust's bindings and C would make two backends share a slot.
fn proc_number() -> usize {
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    // SAFETY: MyProc is set for every backend and worker that can run our code.
    let n = unsafe { (*pg_sys::MyProc).pgprocno };
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    // SAFETY: a backend global, set at process start.
    let n = unsafe { pg_sys::MyProcNumber };
    n as usize
}

fn my_slot_index() -> AuditResult<usize> {
    let index = proc_number();
    if index >= MAX_SLOTS {
        return Err(AuditError::object_not_in_prerequisite_state("too many backends for audit_db's epoch slots")
            .detail(format!("This backend is number {index}; audit_db tracks {MAX_SLOTS}."))
            .hint("Lower max_connections."));
    }
    Ok(index)
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    if pg_sys::MyProc.is_null() {
        return;
    }
    let Ok(index) = my_slot_index() else { return };
    let slot = &SEAL.get().slots[index];
    match event {
        XACT_EVENT_PRE_PREPARE if slot.load(SeqCst) != 0 => {
            slot.store(0, SeqCst);
            AuditError::feature_not_supported("audit_log inserts cannot be part of a prepared transaction")
                .detail("A prepared transaction could commit after its epoch was sealed.")
                .hint("Insert audit events outside PREPARE TRANSACTION.")
                .report();
        }
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_PARALLEL_ABORT => {
            slot.store(0, SeqCst);
            RETIRING.with(|r| r.borrow_mut().clear());
        }
        _ => {}
    }
}

thread_local! {
    /// The extension OID whose block table this backend has raised `closed` to.
    static FLOOR_FOR: std::cell::Cell<pg_sys::Oid> = const { std::cell::Cell::new(pg_sys::InvalidOid) };
}

/// After a restart `closed` starts at 0: raise it past every block of this database
/// and up to the newest epoch a row carries, before the first tag (once per backend
/// and installation). Blocks alone are not enough: runs that sealed nothing still moved
/// `closed` on, so rows may carry epochs past the last block; a floor below them left
/// those rows unsealed until `closed` caught up again, many runs later (found by the
/// fault test: a crash while sealing 150,000 rows). The newest row epoch minus one: in
/// a running server that is at most `closed` (rows carry at most the open epoch), so a
/// backend's first insert never closes the open epoch; after a restart new rows join
/// the newest unsealed epoch, which has no block yet.
fn ensure_floor(sh: &SealShared) -> AuditResult<()> {
    let oid = crate::base::spi_util::ext_oid();
    if FLOOR_FOR.with(|f| f.get()) == oid {
        return Ok(());
    }
    let owner = crate::base::spi_util::ext_owner()?;
    let ext = crate::base::spi_util::ext_schema()?;
    let sql = format!(
        "SELECT GREATEST((SELECT coalesce(pg_catalog.max(epoch), 0) FROM {ext}.audit_seal_block),
                         (SELECT coalesce(pg_catalog.max(seal_epoch), 0) - 1 FROM {ext}.audit_log))"
    );
    // Writers may not read the block table: the floor is read as the extension's owner.
    let floor = {
        let _owner = crate::base::owner::UserSwitch::to(owner);
        Spi::get_one::<i64>(&sql)?.unwrap_or(0)
    };
    sh.closed.fetch_max(floor, SeqCst);
    FLOOR_FOR.with(|f| f.set(oid));
    Ok(())
}

/// Raises `closed` past every block of this database now (the sealer, every run).
pub fn ensure_floor_now(sh: &SealShared) -> AuditResult<()> {
    FLOOR_FOR.with(|f| f.set(pg_sys::InvalidOid));
    ensure_floor(sh)
}

/// The epochs <= `upto` that open transactions still write into.
pub fn open_epochs(sh: &SealShared, upto: i64) -> Vec<i64> {
    sh.slots.iter().map(|s| s.load(SeqCst)).filter(|&e| e != 0 && e <= upto).collect()
}

/// Whether this backend's own open transaction writes into `epoch` (it cannot be
/// waited for: it commits after the sealer returns).
pub fn own_epoch_is(sh: &SealShared, epoch: i64) -> bool {
    my_slot_index().map(|i| sh.slots[i].load(SeqCst) == epoch).unwrap_or(false)
}

/// The epoch this transaction's rows carry.
fn write_epoch() -> AuditResult<i64> {
    let sh = shared()?;
    let slot = &sh.slots[my_slot_index()?];
    let mine = slot.load(SeqCst);
    if mine != 0 {
        return Ok(mine);
    }
    ensure_floor(sh)?;
    loop {
        let closed = sh.closed.load(SeqCst);
        slot.store(closed + 1, SeqCst);
        if sh.closed.load(SeqCst) == closed {
            return Ok(closed + 1);
        }
    }
}

// ------------------------------------------------------------ the trigger

/// Attribute numbers of the columns the hash reads, per relation (partitions made by
/// attach-mode conversion may number their columns differently from the parent).
#[derive(Clone, Copy)]
struct Columns {
    relid: pg_sys::Oid,
    at: [i16; COLS.len()],
}

const COLS: [&str; 23] = [
    "id", "timestamp", "ttl", "principal_id", "organization_id", "action", "target_resource_type",
    "target_resource_id", "status", "outcome_description", "hash", "hash_algorithm", "event_version",
    "correlation_id", "data_classification", "retention_policy", "processing_latency", "details",
    "seal_epoch", "row_hash", "signature", "personal_keys", "chain_seq",
];
const C_ID: usize = 0;
const C_TS: usize = 1;
const C_LATENCY: usize = 16;
const C_DETAILS: usize = 17;
const C_EPOCH: usize = 18;
const C_ROW_HASH: usize = 19;
const C_SIGNATURE: usize = 20;
const C_PERSONAL: usize = 21;

thread_local! {
    static COLUMNS: std::cell::RefCell<Vec<Columns>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn columns_of(relid: pg_sys::Oid, tupdesc: pg_sys::TupleDesc) -> AuditResult<Columns> {
    if let Some(c) = COLUMNS.with(|c| c.borrow().iter().find(|c| c.relid == relid).copied()) {
        return Ok(c);
    }
    // SAFETY: `tupdesc` is the trigger relation's descriptor, valid for this call.
    let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked(tupdesc) };
    let mut at = [0i16; COLS.len()];
    for (i, name) in COLS.iter().enumerate() {
        at[i] = desc
            .iter()
            .find(|a| !a.is_dropped() && a.name() == *name)
            .map(|a| a.attnum)
            .ok_or_else(|| AuditError::undefined_column(format!("audit_log has no column \"{name}\"")))?;
    }
    let c = Columns { relid, at };
    COLUMNS.with(|cols| cols.borrow_mut().push(c));
    Ok(c)
}

/// The row's values the hash reads: text borrowed from the tuple (detoasted in the
/// current memory context when toasted), `details` as jsonb's text.
struct RawRow<'t> {
    texts: [Option<&'t str>; COLS.len()],
    /// jsonb's text (lossy only in a database whose encoding is not UTF-8).
    details: Option<std::borrow::Cow<'t, str>>,
    ints: [Option<i64>; COLS.len()],
    personal_keys: Option<Vec<String>>,
    /// The deformed tuple, for forming the trigger's result without deforming it again.
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

/// Deforms the tuple once (one pass over its attributes, where reading 23 of them one
/// by one would walk the variable-width ones again for each).
///
/// SAFETY (for callers): `tuple` and `tupdesc` describe a live audit_log tuple that
/// outlives the row read from it (`'t`).
unsafe fn read_row<'t>(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, cols: &Columns) -> RawRow<'t> {
    // SAFETY: the caller's promise; heap_deform_tuple fills natts entries of each array.
    let natts = unsafe { (*tupdesc).natts } as usize;
    let mut values = vec![pg_sys::Datum::from(0); natts];
    let mut nulls = vec![true; natts];
    // SAFETY: as above; both arrays hold natts entries.
    unsafe { pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr()) };
    let mut texts: [Option<&'t str>; COLS.len()] = [None; COLS.len()];
    let mut ints = [None; COLS.len()];
    let mut personal_keys = None;
    let mut details = None;
    for (i, attno) in cols.at.iter().enumerate() {
        let index = *attno as usize - 1;
        if nulls[index] {
            continue;
        }
        let datum = values[index];
        match i {
            C_ID | C_EPOCH | C_TS | 22 => ints[i] = Some(datum.value() as i64),
            C_LATENCY => ints[i] = Some(i64::from(datum.value() as i32)),
            C_DETAILS => {
                // SAFETY: jsonb_out returns a palloc'd C string in the current context.
                details = pgrx::direct_function_call::<&std::ffi::CStr>(pg_sys::jsonb_out, &[Some(datum)])
                    .map(|c| c.to_string_lossy())
            }
            // SAFETY: a non-NULL text[] datum of the tuple.
            C_PERSONAL => personal_keys = unsafe { <Vec<String> as FromDatum>::from_datum(datum, false) },
            // SAFETY: a non-NULL text-like datum of the tuple, alive for 't.
            _ => texts[i] = unsafe { <&'t str as FromDatum>::from_datum(datum, false) },
        }
    }
    RawRow { texts, details, ints, personal_keys, values, nulls }
}

impl RawRow<'_> {
    fn event(&self) -> EventV2<'_> {
        let t = |i: usize| self.texts[i];
        EventV2 {
            id: self.ints[C_ID],
            // An adopted `infinity` stays the largest value.
            timestamp_us: self.ints[C_TS].map(crate::base::timestamp::unix_micros),
            ttl: t(2),
            principal_id: t(3),
            organization_id: t(4),
            action: t(5),
            target_resource_type: t(6),
            target_resource_id: t(7),
            status: t(8),
            outcome_description: t(9),
            hash: t(10),
            hash_algorithm: t(11),
            event_version: t(12),
            correlation_id: t(13),
            data_classification: t(14),
            retention_policy: t(15),
            processing_latency: self.ints[C_LATENCY].map(|v| v as i32),
            details: self.details.as_deref(),
            seal_epoch: self.ints[C_EPOCH],
        }
    }
}

/// `signing_ring()` for the insert trigger, which checks the key file at most every
/// 100 ms (`keys::key_ring_for_inserts`). A configured key that cannot be read
/// refuses the insert: an unsigned row would be indistinguishable from a forged one.
fn insert_signing_ring() -> AuditResult<Option<Rc<KeyRing>>> {
    crate::base::keys::key_ring_for_inserts().transpose().map_err(|e| AuditError {
        message: format!("audit event not stored: {}", e.message),
        detail: Some(format!(
            "A key is configured but cannot be read; audit_db stores no unsigned event while a key is configured.{}",
            e.detail.as_deref().map(|d| format!(" {d}")).unwrap_or_default()
        )),
        ..e
    })
}

/// A restore (pg_restore, a copy between clusters) brings rows that were sealed
/// elsewhere: they keep their evidence when the session user is a superuser (no
/// setting any role can change decides this) and their signature checks under a key of
/// this server's ring. Anything else is hashed, signed and tagged afresh.
fn genuine_restored_row(row: &RawRow<'_>, ring: Option<&KeyRing>) -> bool {
    let (Some(epoch), Some(stored), Some(sig)) =
        (row.ints[C_EPOCH], row.texts[C_ROW_HASH], row.texts[C_SIGNATURE])
    else {
        return false;
    };
    if !crate::base::restore::superuser_session() || epoch <= 0 {
        return false;
    }
    let Some(ring) = ring else { return false };
    let personal = row.personal_keys.clone().unwrap_or_default();
    let check = check_row(&row.event(), stored, Some(sig), &personal, Some(ring), &|_, _| None);
    check.hash_ok && check.signature_ok && check.verifiable
}

/// BEFORE INSERT on audit_log (cloned to every partition): row hash, signature, epoch.
#[pg_trigger]
fn audit_log_seal_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::datum::TryFromDatumError> {
    let data = trigger.trigger_data();
    // SAFETY: a row-level insert trigger: tg_trigtuple and tg_relation are valid.
    let (tuple, tupdesc, relid) = unsafe { (data.tg_trigtuple, (*data.tg_relation).rd_att, (*data.tg_relation).rd_id) };
    let cols = columns_of(relid, tupdesc).or_report();
    // SAFETY: as above.
    let row = unsafe { read_row(tuple, tupdesc, &cols) };
    // Rows audit_db moves itself (DEFAULT -> new partition) keep their evidence.
    if crate::base::internal::active() && row.texts[C_ROW_HASH].is_some() {
        // SAFETY: the trigger's own tuple and descriptor, handed back unchanged.
        return Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(tupdesc), tuple) }));
    }
    // Adoption (internal) keeps the original application's infinite times.
    if let Some(ts) = row.ints[C_TS].filter(|_| !crate::base::internal::active()) {
        if ts == i64::MAX || ts == i64::MIN {
            AuditError::datetime_out_of_range("audit event timestamp must be finite")
                .detail("audit_log refuses events dated infinity or -infinity.")
                .hint("Record the time the event happened, for example now().")
                .report();
        }
    }
    let ring = insert_signing_ring().or_report();
    if genuine_restored_row(&row, ring.as_deref()) {
        // SAFETY: the trigger's own tuple and descriptor, handed back unchanged.
        return Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(tupdesc), tuple) }));
    }
    crate::journal::unique_id::check(row.ints[C_ID], crate::base::internal::active()).or_report();
    let key = ring.as_ref().map(|r| r.current());
    let personal = core_seal::personal_keys_of(row.details.as_deref(), &personal_details_keys());
    if crate::base::archive_role::is_archive_cached().or_report() {
        crate::base::archive_role::local_insert_refused().report();
    }
    let epoch = write_epoch().or_report();
    let mut event = row.event();
    event.seal_epoch = Some(epoch);
    let hash = core_seal::row_hash(&event, &personal, &|v| core_seal::reference(key, v));
    let signature = key.map(|k| sign(k, &hash));
    let personal_datum = if personal.is_empty() { None } else { personal.into_datum() };
    // The row's own deformed values with the four evidence columns replaced: what
    // heap_modify_tuple does, without deforming the tuple a second time.
    let RawRow { mut values, mut nulls, .. } = row;
    let mut set = |col: usize, datum: Option<pg_sys::Datum>| {
        let index = cols.at[col] as usize - 1;
        values[index] = datum.unwrap_or(pg_sys::Datum::from(0));
        nulls[index] = datum.is_none();
    };
    set(C_EPOCH, epoch.into_datum());
    set(C_ROW_HASH, hash.into_datum());
    set(C_SIGNATURE, signature.into_datum());
    set(C_PERSONAL, personal_datum);
    // SAFETY: values and nulls hold natts entries for this descriptor (read_row); the
    // unchanged ones point into `tuple`, alive until the trigger returns. The header
    // fields copied are those heap_modify_tuple copies.
    let modified = unsafe {
        let formed = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        (*(*formed).t_data).t_ctid = (*(*tuple).t_data).t_ctid;
        (*formed).t_self = (*tuple).t_self;
        (*formed).t_tableOid = (*tuple).t_tableOid;
        formed
    };
    // SAFETY: `modified` was formed above from the trigger's descriptor, in the
    // trigger's memory context.
    Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(pgrx::PgTupleDesc::from_pg_unchecked(tupdesc), modified) }))
}

// ------------------------------------------------------------ row checks

/// Per epoch: rows and the sum of their elements.
pub type EpochSums = BTreeMap<i64, (i64, Limbs)>;

/// Adds `rows` rows whose elements sum to `sum` to `epoch`'s tally.
pub fn tally(sums: &mut EpochSums, epoch: i64, rows: i64, sum: &Limbs) {
    let entry = sums.entry(epoch).or_insert((0, Limbs::default()));
    entry.0 += rows;
    entry.1.add(sum);
}

/// What verification finds for one row.
pub struct RowCheck {
    pub hash_ok: bool,
    pub signature_ok: bool,
    /// False when the row cannot be fully checked here: its key is not in the ring, or
    /// it is unsigned and a pseudonym in it resolves to nothing.
    pub verifiable: bool,
}

/// Recomputes a row's hash exactly as the trigger did (same encoding, the personal keys
/// recorded in the row, references under the signing key) and checks its signature.
/// `resolve(value, key_id)` maps a token or encryption pseudonym written by
/// audit_pseudonymize_subject back to what the hash saw: its original, or, once its
/// subject was forgotten, the reference kept for it under the row's key
/// (`pseudonym_forgotten`).
///
/// Fails closed (issue 25): a pseudonym that resolves to nothing is checked as the
/// text it is, so a signed row whose key is in the ring is a hash mismatch whatever its
/// pseudonymization markers say. Only where no key could check the row anyway (no
/// signature, or a key not in the ring) is it unverifiable instead.
pub fn check_row(
    event: &EventV2,
    stored_hash: &str,
    signature: Option<&str>,
    personal: &[String],
    ring: Option<&KeyRing>,
    resolve: &dyn Fn(&str, Option<&str>) -> Option<String>,
) -> RowCheck {
    let key_id = signature.and_then(|s| s.split_once(':')).map(|(id, _)| id);
    let key = key_id.and_then(|id| ring.and_then(|r| r.get(id)));
    let verifiable = signature.is_none() || key.is_some();
    let signature_ok = match (signature, ring) {
        (Some(sig), Some(ring)) if key.is_some() => signed_by(ring, stored_hash, sig),
        _ => true,
    };
    let as_written = |v: &str| core_seal::reference(if signature.is_some() { key } else { None }, v);
    let mut hash_ok = core_seal::row_hash(event, personal, &as_written) == stored_hash;
    let mut unresolved = false;
    if !hash_ok {
        // Pseudonymized later: reversible pseudonyms stand for what the hash saw (also
        // in a row whose details are no object and so carry no marker: issue 26).
        let missing = std::cell::Cell::new(false);
        let found: std::cell::RefCell<Vec<(String, String)>> = Default::default();
        let resolved = |v: &str| match resolve(v, key_id) {
            Some(original) => {
                let reference = as_written(&original);
                let mut found = found.borrow_mut();
                if !found.iter().any(|(p, _)| p == v) {
                    found.push((v.to_string(), reference.clone()));
                }
                reference
            }
            None => {
                if matches!(audit_db_core::pseudonym::classify(v), Some(s) if s != audit_db_core::pseudonym::Strategy::Hash) {
                    missing.set(true);
                }
                as_written(v)
            }
        };
        hash_ok = core_seal::row_hash(event, personal, &resolved) == stored_hash;
        unresolved = missing.get();
        if !hash_ok {
            hash_ok = some_resolved(&found.into_inner(), &|pick| core_seal::row_hash(event, personal, pick) == stored_hash, &as_written);
        }
    }
    // No key of the ring could have checked this row: not a mismatch, not a pass.
    let excused = !hash_ok && unresolved && key.is_none();
    RowCheck { hash_ok: hash_ok || excused, signature_ok, verifiable: verifiable && !excused }
}

/// How a value enters the hash (as written, or resolved).
type Reference<'a> = &'a dyn Fn(&str) -> String;

/// At most this many distinct resolvable pseudonyms in one row are tried each way.
const MAX_MIXED: usize = 6;

/// A pseudonym in a row is either one pseudonymization put there (the hash saw its
/// original's reference) or one a writer wrote itself, e.g. the target of a logged
/// depseudonymization (the hash saw it as written). After "none resolved" and "all
/// resolved" failed, the mixed cases: `matches(pick)` for each proper subset of the
/// `found` (pseudonym, reference) pairs resolved, the rest as written (issue 25 attack
/// round: without this, such rows were false mismatches).
fn some_resolved(found: &[(String, String)], matches: &dyn Fn(Reference<'_>) -> bool, as_written: Reference<'_>) -> bool {
    if found.len() < 2 || found.len() > MAX_MIXED {
        return false;
    }
    (1u32..(1u32 << found.len()) - 1).any(|mask| {
        let pick = |v: &str| match found.iter().position(|(p, _)| p == v) {
            Some(i) if mask & (1 << i) != 0 => found[i].1.clone(),
            _ => as_written(v),
        };
        matches(&pick)
    })
}

/// Bits of a row's verdict (`verdict_of`, `audit_seal_row_check`).
pub const HASH_BAD: i64 = 1;
pub const SIGNATURE_BAD: i64 = 2;
pub const UNVERIFIABLE: i64 = 4;
/// No signature although a key is configured: acceptable only inside a sealed block
/// (sealed while the server had no key).
pub const UNSIGNED: i64 = 8;

/// Verification of one stored row, read straight from its tuple as the trigger reads
/// it: the verdict bits and the row's element of its epoch's sum.
///
/// # Safety
/// `tuple` and `tupdesc` describe a live row of audit_log (or of its row type) whose
/// relation (or the row type's relation) is `relid`.
pub unsafe fn verdict_of(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    relid: pg_sys::Oid,
    ring: Option<&KeyRing>,
    resolve: &dyn Fn(&str, Option<&str>) -> Option<String>,
) -> AuditResult<(i64, Limbs)> {
    let cols = columns_of(relid, tupdesc)?;
    // SAFETY: the caller's promise.
    let row = unsafe { read_row(tuple, tupdesc, &cols) };
    let stored = row.texts[C_ROW_HASH].unwrap_or("");
    let signature = row.texts[C_SIGNATURE];
    let personal = row.personal_keys.as_deref().unwrap_or(&[]);
    let check = check_row(&row.event(), stored, signature, personal, ring, resolve);
    let flags = if check.hash_ok { 0 } else { HASH_BAD }
        | if check.signature_ok { 0 } else { SIGNATURE_BAD }
        | if check.verifiable { 0 } else { UNVERIFIABLE }
        | if signature.is_none() && ring.is_some() { UNSIGNED } else { 0 };
    Ok((flags, element(stored, signature)))
}

// ------------------------------------------------------------ retirement

thread_local! {
    /// Rows deleted inside `retiring`: per epoch, count and element sum.
    static RETIRING: std::cell::RefCell<EpochSums> = const { std::cell::RefCell::new(BTreeMap::new()) };
    static RETIRING_ACTIVE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by the append-only trigger for each row audit_db deletes.
pub fn note_deleted(epoch: Option<i64>, row_hash: Option<&str>, signature: Option<&str>) {
    if !RETIRING_ACTIVE.with(|a| a.get()) {
        return;
    }
    match (epoch, row_hash) {
        (Some(e), Some(h)) => RETIRING.with(|r| tally(&mut r.borrow_mut(), e, 1, &element(h, signature))),
        // A row without 0.6.0 evidence is counted under the anchor's epoch 0, so that
        // verification can tell its departure from room made for a forged one.
        (None, _) => RETIRING.with(|r| tally(&mut r.borrow_mut(), 0, 1, &Limbs::default())),
        (Some(_), None) => {}
    }
}

/// Runs `f` (which deletes audit_log rows as an internal write) and records what it
/// deleted in audit_seal_retired, with `reason`. Skipped on schemas before 0.6.0.
pub fn retiring<R>(reason: &str, f: impl FnOnce() -> AuditResult<R>) -> AuditResult<R> {
    RETIRING.with(|r| r.borrow_mut().clear());
    RETIRING_ACTIVE.with(|a| a.set(true));
    let out = f();
    RETIRING_ACTIVE.with(|a| a.set(false));
    let out = out?;
    let gone: Vec<(i64, (i64, Limbs))> = RETIRING.with(|r| std::mem::take(&mut *r.borrow_mut()).into_iter().collect());
    record_retired(&gone, reason)?;
    Ok(out)
}

fn record_retired(gone: &[(i64, (i64, Limbs))], reason: &str) -> AuditResult<()> {
    if gone.is_empty() {
        return Ok(());
    }
    let ext = crate::base::spi_util::ext_schema()?;
    let sql = format!(
        "INSERT INTO {ext}.audit_seal_retired (epoch, rows, sum, reason) VALUES ($1, $2, $3, $4)"
    );
    for (epoch, (rows, sum)) in gone {
        Spi::run_with_args(&sql, &[(*epoch).into(), (*rows).into(), sum.hex().into(), reason.into()])?;
    }
    Ok(())
}

/// Whether this installation has the 0.6.0 tables (a 0.5.0 schema served by this
/// library has not been updated yet).
pub fn installed() -> AuditResult<bool> {
    Ok(crate::base::spi_util::read_one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[format!("{}.audit_seal_block", crate::base::spi_util::ext_schema()?).into()],
    )?
    .unwrap_or(false))
}

/// Before a partition of audit_log is dropped or detached: subtract its rows from
/// their epochs. `part` is the partition's OID.
pub fn retire_partition(part: pg_sys::Oid, reason: &str) -> AuditResult<i64> {
    if !installed()? {
        return Ok(0);
    }
    let name = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[pgrx::datum::DatumWithOid::from(crate::base::regclass::Regclass(part))],
    )?
    .ok_or_else(|| AuditError::internal("partition vanished"))?;
    let mut gone = EpochSums::new();
    let mut total = 0;
    // The caller holds the partition locked: read it as of now, not as of the start
    // of the statement (rows committed in between would leave without a record).
    crate::base::spi_util::with_fresh_snapshot(|| Ok(Spi::connect(|client| {
        for r in client.select(
            &format!("SELECT seal_epoch, row_hash, signature FROM {name}"),
            None,
            &[],
        )? {
            match (r.get::<i64>(1)?, r.get::<String>(2)?) {
                (Some(e), Some(h)) => {
                    tally(&mut gone, e, 1, &element(&h, r.get::<String>(3)?.as_deref()));
                    total += 1;
                }
                // Without 0.6.0 evidence: counted under the anchor's epoch 0 (note_deleted).
                (None, _) => tally(&mut gone, 0, 1, &Limbs::default()),
                (Some(_), None) => {}
            }
        }
        Ok::<_, pgrx::spi::Error>(())
    })?))?;
    record_retired(&gone.into_iter().collect::<Vec<_>>(), reason)?;
    Ok(total)
}
