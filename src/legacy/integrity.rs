//! Tamper evidence of 0.4.0 and 0.5.0 for `audit_log` (see `audit_db_core::integrity`
//! for the encoding): their BEFORE INSERT trigger that hashes, signs and chains every
//! event, their `audit_verify_integrity()` and `audit_integrity_digest()`, and the check
//! of the chains of rows written before 0.6.0 (`verify_legacy`), which reads the
//! retirement records (`audit_chain_retired`, written by evidence/retirement.rs) to
//! verify the chains across rows removed by retention, erasure or a dropped partition.
//!
//! Chains are per organization (`coalesce(organization_id, '')`): the chain head row of
//! an organization is locked from the insert to the commit of its transaction, so
//! writers of one organization commit one after another while organizations proceed in
//! parallel, and an aborted insert leaves no gap (its head update rolls back with it).

use crate::base::spi_util::q;
use crate::base::timestamp::UNIX_TO_PG_EPOCH_US;
use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::personal_details_keys;
use crate::base::keys::signing_ring;
use audit_db_core::crypto::KeyRing;
use audit_db_core::integrity::{
    chain_hash, encoded_details, event_hash, personal_ref, sign, Field, GENESIS, HASH_ALGORITHM,
};
use audit_db_core::pseudonym;
use pgrx::prelude::*;

/// The fields of an audit event that the hash covers, as read from a row.
#[derive(Debug, Default, Clone)]
pub struct EventRow {
    pub id: Option<i64>,
    pub timestamp: Option<TimestampWithTimeZone>,
    pub ttl: Option<String>,
    pub principal_id: Option<String>,
    pub organization_id: Option<String>,
    pub action: Option<String>,
    pub target_resource_type: Option<String>,
    pub target_resource_id: Option<String>,
    pub status: Option<String>,
    pub outcome_description: Option<String>,
    pub event_version: Option<String>,
    pub correlation_id: Option<String>,
    pub data_classification: Option<String>,
    pub retention_policy: Option<String>,
    pub processing_latency: Option<i32>,
    pub details: Option<serde_json::Value>,
}

fn text(v: &Option<String>) -> Field {
    v.as_ref().map(|s| Field::Text(s.clone())).unwrap_or(Field::Null)
}

fn timestamp(v: &Option<TimestampWithTimeZone>) -> Field {
    match v {
        None => Field::Null,
        Some(ts) => {
            let raw = pg_sys::TimestampTz::from(*ts);
            match raw {
                i64::MAX => Field::Text("infinity".into()),
                i64::MIN => Field::Text("-infinity".into()),
                us => Field::Timestamp(us + UNIX_TO_PG_EPOCH_US),
            }
        }
    }
}

/// The encoded fields, personal values replaced by `reference`.
pub fn event_fields(row: &EventRow, personal: &[String], reference: &dyn Fn(&str) -> String) -> Vec<(&'static str, Field)> {
    vec![
        ("id", row.id.map(Field::Int).unwrap_or(Field::Null)),
        ("timestamp", timestamp(&row.timestamp)),
        ("ttl", text(&row.ttl)),
        ("principal", row.principal_id.as_ref().map(|p| Field::Text(reference(p))).unwrap_or(Field::Null)),
        ("organization_id", text(&row.organization_id)),
        ("action", text(&row.action)),
        ("target_resource_type", text(&row.target_resource_type)),
        ("target_resource_id", text(&row.target_resource_id)),
        ("status", text(&row.status)),
        ("outcome_description", text(&row.outcome_description)),
        ("event_version", text(&row.event_version)),
        ("correlation_id", text(&row.correlation_id)),
        ("data_classification", text(&row.data_classification)),
        ("retention_policy", text(&row.retention_policy)),
        ("processing_latency", row.processing_latency.map(|i| Field::Int(i64::from(i))).unwrap_or(Field::Null)),
        // NULL details count as {}: pseudonymizing a subject adds its markers to them.
        (
            "details",
            Field::Json(encoded_details(
                row.details.as_ref().unwrap_or(&serde_json::Value::Object(Default::default())),
                personal,
                reference,
            )),
        ),
    ]
}

fn field<'t, T>(t: &'t PgHeapTuple<'_, impl WhoAllocated>, name: &str) -> AuditResult<Option<T>>
where
    T: FromDatum + IntoDatum + pgrx::datum::UnboxDatum<As<'t> = T> + 't,
{
    t.get_by_name::<T>(name).map_err(|e| AuditError::internal(format!("audit_log.{name}: {e}")))
}

fn row_from_tuple(t: &PgHeapTuple<'_, impl WhoAllocated>) -> AuditResult<EventRow> {
    Ok(EventRow {
        id: field(t, "id")?,
        timestamp: field(t, "timestamp")?,
        ttl: field(t, "ttl")?,
        principal_id: field(t, "principal_id")?,
        organization_id: field(t, "organization_id")?,
        action: field(t, "action")?,
        target_resource_type: field(t, "target_resource_type")?,
        target_resource_id: field(t, "target_resource_id")?,
        status: field(t, "status")?,
        outcome_description: field(t, "outcome_description")?,
        event_version: field(t, "event_version")?,
        correlation_id: field(t, "correlation_id")?,
        data_classification: field(t, "data_classification")?,
        retention_policy: field(t, "retention_policy")?,
        processing_latency: field(t, "processing_latency")?,
        details: field::<pgrx::JsonB>(t, "details")?.map(|j| j.0),
    })
}

/// A chain head as this transaction sees it.
#[derive(Clone)]
struct Head {
    seq: i64,
    hash: String,
}

/// One chain's state in this transaction: the head (locked in the database since it
/// was loaded) and, per subtransaction that changed it, the state to restore if that
/// subtransaction rolls back (None = not loaded before it: forget the chain, its row
/// lock went with the subtransaction).
struct ChainState {
    head: Head,
    saves: Vec<(pg_sys::SubTransactionId, Option<Head>)>,
}

thread_local! {
    static HEADS: std::cell::RefCell<std::collections::HashMap<String, ChainState>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    /// `audit_chain_lock($1)` and `audit_chain_store($1, $2, $3)`, prepared once per
    /// backend (per installation of the extension, by its OID),
    /// and the extension's owner, as whom they run.
    static STMTS: std::cell::RefCell<Option<Statements>> = const { std::cell::RefCell::new(None) };
    /// Whether this transaction's commit callbacks are registered.
    static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Statements {
    ext_oid: pg_sys::Oid,
    owner: pg_sys::Oid,
    lock: pgrx::spi::OwnedPreparedStatement,
    store: pgrx::spi::OwnedPreparedStatement,
}


/// Runs `f` with the prepared (lock, store) statements, preparing them if needed, as
/// the extension's owner: the chain head functions are executable by nobody else, so
/// a session cannot move a chain head except by inserting an event.
fn with_statements<R>(
    f: impl FnOnce(&pgrx::spi::OwnedPreparedStatement, &pgrx::spi::OwnedPreparedStatement) -> AuditResult<R>,
) -> AuditResult<R> {
    let ext_oid = crate::base::spi_util::ext_oid();
    STMTS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|s| s.ext_oid != ext_oid).unwrap_or(true) {
            let schema = crate::base::spi_util::ext_schema()?;
            let text = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
            let int8 = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
            let lock_sql = format!("SELECT seq, chain_hash FROM {schema}.audit_chain_lock($1)");
            let store_sql = format!("SELECT {schema}.audit_chain_store($1, $2, $3)");
            let owner = crate::base::spi_util::ext_owner()?;
            let (lock, store) = Spi::connect(|client| {
                Ok::<_, pgrx::spi::Error>((
                    client.prepare_mut(lock_sql.as_str(), &[text])?.keep(),
                    client.prepare_mut(store_sql.as_str(), &[text, int8, text])?.keep(),
                ))
            })?;
            *slot = Some(Statements { ext_oid, owner, lock, store });
        }
        let s = slot.as_ref().expect("prepared above");
        let _owner = crate::base::owner::UserSwitch::to(s.owner);
        f(&s.lock, &s.store)
    })
}

fn clear_heads() {
    HEADS.with(|h| h.borrow_mut().clear());
    REGISTERED.with(|r| r.set(false));
}

/// Before commit: write every head this transaction advanced (one UPDATE per chain).
fn flush_heads() {
    let heads: Vec<(String, Head)> =
        HEADS.with(|h| h.borrow().iter().map(|(k, c)| (k.clone(), c.head.clone())).collect());
    if heads.is_empty() {
        return;
    }
    // Pre-commit runs outside any statement: give SPI a snapshot, as deferred
    // triggers get one at this point.
    // SAFETY: balanced push/pop around the queries below; an error aborts the
    // transaction, which discards the snapshot stack anyway.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    with_statements(|_, store| {
        Spi::connect_mut(|client| {
            for (key, head) in &heads {
                client.update(store, None, &[key.as_str().into(), head.seq.into(), head.hash.as_str().into()])?;
            }
            Ok::<_, pgrx::spi::Error>(())
        })
        .map_err(AuditError::from)
    })
    .or_report();
    // SAFETY: pops the snapshot this function pushed above (an error aborts the
    // transaction instead, which resets the snapshot stack).
    unsafe { pg_sys::PopActiveSnapshot() };
}

/// pgrx's transaction and subtransaction callbacks last one transaction: registered
/// at the transaction's first append.
fn ensure_callbacks() {
    if !REGISTERED.with(|r| r.get()) {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::PreCommit, flush_heads);
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, clear_heads);
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Abort, clear_heads);
        pgrx::register_subxact_callback(pgrx::PgSubXactCallbackEvent::AbortSub, |my_subid, _parent| {
            HEADS.with(|h| {
                let mut heads = h.borrow_mut();
                let mut forget = Vec::new();
                for (key, chain) in heads.iter_mut() {
                    // The state before the earliest change made at or below this level.
                    if let Some(pos) = chain.saves.iter().position(|(sub, _)| *sub >= my_subid) {
                        match chain.saves[pos].1.clone() {
                            Some(head) => chain.head = head,
                            None => forget.push(key.clone()),
                        }
                        chain.saves.truncate(pos);
                    }
                }
                for key in forget {
                    heads.remove(&key);
                }
            });
        });
        REGISTERED.with(|r| r.set(true));
    }
}

/// Appends `hash` to the chain of `chain_key`: (sequence number, chain hash). The head
/// is locked and loaded once per transaction, then kept here; `flush_heads` writes it
/// back before commit. A rolled-back subtransaction restores the head it found.
fn append_link(chain_key: &str, hash: &str) -> AuditResult<(i64, String)> {
    ensure_callbacks();
    // SAFETY: reads backend state.
    let subid = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let known = HEADS.with(|h| h.borrow().get(chain_key).map(|c| c.head.clone()));
    let (previous, saved) = match known {
        Some(head) => (head.clone(), Some(head)),
        None => {
            let (seq, hash) = with_statements(|lock, _| {
                Spi::connect_mut(|client| {
                    let mut t = client.update(lock, Some(1), &[chain_key.into()])?;
                    let r = t.next().ok_or(pgrx::spi::Error::InvalidPosition)?;
                    Ok::<_, pgrx::spi::Error>((r.get::<i64>(1)?.unwrap_or(0), r.get::<String>(2)?.unwrap_or_default()))
                })
                .map_err(AuditError::from)
            })?;
            (Head { seq, hash }, None)
        }
    };
    let next = Head { seq: previous.seq + 1, hash: chain_hash(&previous.hash, hash) };
    HEADS.with(|h| {
        let mut heads = h.borrow_mut();
        let chain = heads
            .entry(chain_key.to_string())
            .or_insert_with(|| ChainState { head: previous.clone(), saves: Vec::new() });
        if chain.saves.last().map(|(sub, _)| *sub != subid).unwrap_or(true) {
            chain.saves.push((subid, saved));
        }
        chain.head = next.clone();
    });
    Ok((next.seq, next.hash))
}

/// BEFORE INSERT on audit_log in versions 0.4.0 and 0.5.0 (their frozen scripts still
/// name this symbol): hash, signature, chain. 0.6.0 uses `seal::audit_log_seal_trigger`.
#[pg_trigger(sql = false)]
fn audit_log_integrity_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::datum::TryFromDatumError> {
    let mut new = trigger
        .new()
        .ok_or_else(|| AuditError::internal("audit_log_integrity_trigger fired without a new row"))
        .or_report()
        .into_owned();
    // A row audit_db moves (DEFAULT -> new partition), or one pg_restore brings back,
    // keeps its hash and link. (pg_dump's scripts set row_security = off; a row that
    // slips in this way with a made-up link still fails verification: its signature
    // or its place in the chain gives it away.)
    if (crate::base::internal::active() || crate::base::restore::restoring())
        && field::<i64>(&new, "chain_seq").or_report().is_some()
        && field::<String>(&new, "chain_hash").or_report().is_some()
    {
        return Ok(Some(new));
    }
    let row = row_from_tuple(&new).or_report();
    // An event at +/-infinity would sit in DEFAULT forever, past every retention.
    if row.timestamp.map(|t| t.is_infinity() || t.is_neg_infinity()).unwrap_or(false) {
        AuditError::datetime_out_of_range("audit event timestamp must be finite")
            .detail("audit_log refuses events dated infinity or -infinity.")
            .hint("Record the time the event happened, for example now().")
            .report();
    }
    let ring = signing_ring().or_report();
    let key = ring.as_ref().map(|r| r.current());
    let personal = personal_details_keys();
    let hash = event_hash(&event_fields(&row, &personal, &|v| personal_ref(key, v)));
    let signature = key.map(|k| sign(k, &hash));
    let chain_key = row.organization_id.clone().unwrap_or_default();
    let link = append_link(&chain_key, &hash).or_report();
    new.set_by_name("hash", hash)?;
    new.set_by_name("hash_algorithm", HASH_ALGORITHM.to_string())?;
    new.set_by_name("signature", signature)?;
    new.set_by_name("chain_seq", link.0)?;
    new.set_by_name("chain_hash", link.1)?;
    Ok(Some(new))
}

// ------------------------------------------------------------- verification

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub checked: i64,
    pub hash_mismatches: i64,
    pub signature_mismatches: i64,
    pub chain_breaks: i64,
    pub first_bad_id: Option<i64>,
    pub unsigned: i64,
    pub unchained: i64,
    pub unverifiable: i64,
    /// Rows without chain or seal, and those of them whose stored hash is the
    /// original application's.
    pub original_rows: i64,
    pub original_verified: i64,
}

impl Report {
    fn bad(&mut self, id: Option<i64>) {
        let id = id.unwrap_or(0);
        self.first_bad_id = Some(self.first_bad_id.map_or(id, |f| f.min(id)));
    }
}

/// The original behind a pseudonym found in a row, to rebuild its reference; None
/// when it cannot be known (a forgotten subject).
fn reference_candidates(ring: Option<&KeyRing>, value: &str) -> AuditResult<Option<Vec<String>>> {
    // Already a hash pseudonym: it is the reference itself.
    if pseudonym::classify(value) == Some(pseudonym::Strategy::Hash) || value.starts_with("sha256:") {
        return Ok(Some(vec![value.to_string()]));
    }
    let original = if matches!(
        pseudonym::classify(value),
        Some(pseudonym::Strategy::Token) | Some(pseudonym::Strategy::Encryption)
    ) {
        let Some(ring) = ring else { return Ok(None) };
        let sealed = Spi::get_one_with_args::<String>(
            &format!(
                "SELECT (SELECT original_id FROM {}.pseudonym_mapping WHERE pseudonym_id = $1 LIMIT 1)",
                crate::base::spi_util::ext_schema()?
            ),
            &[value.into()],
        )?;
        match sealed.and_then(|s| pseudonym::open_original(ring, &s).ok()) {
            Some(o) => o,
            None => return Ok(None),
        }
    } else {
        value.to_string()
    };
    let mut out: Vec<String> = ring.map(|r| r.keys().iter().map(|k| personal_ref(Some(k), &original)).collect()).unwrap_or_default();
    out.push(personal_ref(None, &original));
    Ok(Some(out))
}

/// Recomputes the hash of a stored row; Some(true/false) or None if a personal value
/// cannot be resolved any more.
fn row_hash_matches(row: &EventRow, stored: &str, ring: Option<&KeyRing>, personal: &[String]) -> AuditResult<Option<bool>> {
    // Personal values present in the row.
    let mut values: Vec<String> = Vec::new();
    if let Some(p) = &row.principal_id {
        values.push(p.clone());
    }
    if let Some(serde_json::Value::Object(map)) = &row.details {
        for k in personal {
            if let Some(serde_json::Value::String(s)) = map.get(k) {
                values.push(s.clone());
            }
        }
    }
    let mut refs: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for v in values {
        match reference_candidates(ring, &v)? {
            Some(c) => {
                refs.insert(v, c);
            }
            None => return Ok(None),
        }
    }
    // One key signed the whole row: try each key's references (and the unkeyed ones).
    let mut variants: Vec<Option<usize>> = ring.map(|r| (0..r.keys().len()).map(Some).collect()).unwrap_or_default();
    variants.push(None);
    for variant in variants {
        let reference = |v: &str| -> String {
            let c = &refs[v];
            if c.len() == 1 {
                return c[0].clone();
            }
            match variant {
                Some(i) => c[i].clone(),
                None => c[c.len() - 1].clone(),
            }
        };
        if event_hash(&event_fields(row, personal, &reference)) == stored {
            return Ok(Some(true));
        }
    }
    Ok(Some(false))
}

const ROW_COLUMNS: &str = "id::int8, \"timestamp\", ttl, principal_id, organization_id, action, target_resource_type,
    target_resource_id, status, outcome_description, event_version, correlation_id, data_classification,
    retention_policy, processing_latency, details, hash, signature, chain_seq, chain_hash";

/// Rows written before 0.6.0 (no `seal_epoch`): their per-organization chains.
pub fn verify_legacy(from: TimestampWithTimeZone, to: TimestampWithTimeZone) -> AuditResult<Report> {
    verify(from, to, true)
}

/// A run of chain links whose rows were retired: the link after `to_seq` continues
/// from `last_hash`.
struct RetiredRun {
    chain: String,
    to_seq: i64,
    last_hash: String,
}

fn retired_runs(ext: &str) -> AuditResult<Vec<RetiredRun>> {
    Ok(Spi::connect(|client| {
        let mut out = Vec::new();
        for r in client.select(
            &format!("SELECT chain_key, to_seq, last_hash FROM {ext}.audit_chain_retired ORDER BY chain_key, from_seq"),
            None,
            &[],
        )? {
            out.push(RetiredRun {
                chain: r.get::<String>(1)?.unwrap_or_default(),
                to_seq: r.get::<i64>(2)?.unwrap_or(0),
                last_hash: r.get::<String>(3)?.unwrap_or_default(),
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })?)
}

/// Rows in the range without any chain (written before 0.4.0, or adopted): counted,
/// not verifiable through a chain. `legacy_only` leaves out 0.6.0 rows.
fn count_unchained(ext: &str, from: TimestampWithTimeZone, to: TimestampWithTimeZone, legacy_only: bool) -> AuditResult<i64> {
    Ok(crate::base::spi_util::read_one::<i64>(
        &format!(
            "SELECT pg_catalog.count(*) FROM {ext}.audit_log
              WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 AND chain_seq IS NULL{}",
            if legacy_only { " AND seal_epoch IS NULL" } else { "" }
        ),
        &[from.into(), to.into()],
    )?
    .unwrap_or(0))
}

/// Chains whose head is ahead of their last surviving (or retired) link: a lost tail.
fn lost_tails(ext: &str) -> AuditResult<i64> {
    Ok(crate::base::spi_util::read_one::<i64>(&format!(
        "SELECT pg_catalog.count(*) FROM {ext}.audit_chain_head h
          WHERE h.seq > 0
            AND NOT EXISTS (SELECT 1 FROM {ext}.audit_log a WHERE coalesce(a.organization_id, '') = h.chain_key
                               AND a.chain_seq = h.seq)
            AND NOT EXISTS (SELECT 1 FROM {ext}.audit_chain_retired r WHERE r.chain_key = h.chain_key
                               AND h.seq BETWEEN r.from_seq AND r.to_seq)"
    ), &[])?
    .unwrap_or(0))
}

/// One chained row as read for verification.
struct ChainedRow {
    row: EventRow,
    stored_hash: Option<String>,
    signature: Option<String>,
    seq: Option<i64>,
    stored_chain: Option<String>,
}

fn read_chained_row(r: &pgrx::spi::SpiHeapTupleData) -> Result<ChainedRow, pgrx::spi::Error> {
    Ok(ChainedRow {
        row: EventRow {
            id: r.get::<i64>(1)?,
            timestamp: r.get::<TimestampWithTimeZone>(2)?,
            ttl: r.get::<String>(3)?,
            principal_id: r.get::<String>(4)?,
            organization_id: r.get::<String>(5)?,
            action: r.get::<String>(6)?,
            target_resource_type: r.get::<String>(7)?,
            target_resource_id: r.get::<String>(8)?,
            status: r.get::<String>(9)?,
            outcome_description: r.get::<String>(10)?,
            event_version: r.get::<String>(11)?,
            correlation_id: r.get::<String>(12)?,
            data_classification: r.get::<String>(13)?,
            retention_policy: r.get::<String>(14)?,
            processing_latency: r.get::<i32>(15)?,
            details: r.get::<pgrx::JsonB>(16)?.map(|j| j.0),
        },
        stored_hash: r.get::<String>(17)?,
        signature: r.get::<String>(18)?,
        seq: r.get::<i64>(19)?,
        stored_chain: r.get::<String>(20)?,
    })
}

/// A walk along the chains in (organization, sequence) order, row by row.
struct ChainWalk<'a> {
    ext: String,
    ring: Option<&'a KeyRing>,
    personal: Vec<String>,
    retired: Vec<RetiredRun>,
    /// The previous row's (chain, sequence number, chain hash).
    last: Option<(String, i64, String)>,
    report: Report,
}

impl ChainWalk<'_> {
    /// The chain hash just before `seq`, if the link before it is accounted for: the
    /// row before it, or a retired run ending right before it.
    fn predecessor(&self, chain: &str, seq: i64) -> AuditResult<Option<String>> {
        if seq == 1 {
            return Ok(Some(GENESIS.to_string()));
        }
        let ext = &self.ext;
        let found = Spi::get_one_with_args::<String>(
            &format!(
                "SELECT (SELECT chain_hash FROM {ext}.audit_log WHERE coalesce(organization_id, '') = $1
                           AND chain_seq = $2 LIMIT 1)"
            ),
            &[chain.into(), (seq - 1).into()],
        )?;
        if found.is_some() {
            return Ok(found);
        }
        Ok(self.retired.iter().find(|r| r.chain == chain && r.to_seq == seq - 1).map(|r| r.last_hash.clone()))
    }

    /// Recomputes the row's v1 hash; true if it is wrong.
    fn hash_is_bad(&mut self, row: &EventRow, stored: &str) -> AuditResult<bool> {
        match row_hash_matches(row, stored, self.ring, &self.personal)? {
            Some(true) => Ok(false),
            Some(false) => {
                self.report.hash_mismatches += 1;
                Ok(true)
            }
            None => {
                self.report.unverifiable += 1;
                Ok(false)
            }
        }
    }

    /// Checks the signature of the stored hash; true if it is wrong.
    fn signature_is_bad(&mut self, signature: Option<&str>, stored: &str) -> bool {
        match (signature, self.ring) {
            (None, _) => {
                self.report.unsigned += 1;
                false
            }
            (Some(sig), Some(ring)) => {
                let ok = crate::base::keys::signed_by(ring, stored, sig);
                if !ok {
                    self.report.signature_mismatches += 1;
                }
                !ok
            }
            (Some(_), None) => {
                self.report.unverifiable += 1;
                false
            }
        }
    }

    /// Checks the row's link to its predecessor; true if the chain is broken here.
    fn link_is_bad(&mut self, chain: String, seq: Option<i64>, stored_chain: Option<String>, stored: &str) -> AuditResult<bool> {
        let (Some(seq), Some(stored_chain)) = (seq, stored_chain) else {
            self.report.unchained += 1;
            return Ok(false);
        };
        let prev = match &self.last {
            Some((c, s, h)) if *c == chain && *s == seq - 1 => Some(h.clone()),
            Some((c, s, _)) if *c == chain && *s == seq => None, // duplicate link
            _ => self.predecessor(&chain, seq)?,
        };
        let ok = prev.map(|p| chain_hash(&p, stored) == stored_chain).unwrap_or(false);
        if !ok {
            self.report.chain_breaks += 1;
        }
        self.last = Some((chain, seq, stored_chain));
        Ok(!ok)
    }

    fn check(&mut self, c: ChainedRow) -> AuditResult<()> {
        self.report.checked += 1;
        let Some(stored) = c.stored_hash.as_deref() else {
            self.report.unchained += 1;
            return Ok(());
        };
        let chain = c.row.organization_id.clone().unwrap_or_default();
        let bad_hash = self.hash_is_bad(&c.row, stored)?;
        let bad_signature = self.signature_is_bad(c.signature.as_deref(), stored);
        let bad_link = self.link_is_bad(chain, c.seq, c.stored_chain.clone(), stored)?;
        if bad_hash || bad_signature || bad_link {
            self.report.bad(c.row.id);
        }
        Ok(())
    }
}

/// The 0.4.0/0.5.0 check; `legacy_only` leaves out 0.6.0 rows (they have no chain).
/// Keyset pagination in chain order, one SPI connection per batch of 1,000 rows, so
/// each batch's rows are freed before the next: memory stays flat whatever the count.
pub fn verify(from: TimestampWithTimeZone, to: TimestampWithTimeZone, legacy_only: bool) -> AuditResult<Report> {
    let ext = crate::base::spi_util::ext_schema()?;
    let ring = signing_ring()?;
    let mut walk = ChainWalk {
        ext: ext.clone(),
        ring: ring.as_deref(),
        personal: personal_details_keys().to_vec(),
        retired: retired_runs(&ext)?,
        last: None,
        report: Report::default(),
    };
    if legacy_only {
        // 0.6.0: rows the original application wrote are checked against its own hash.
        let u = crate::journal::original::check_unchained(&ext, from, to)?;
        walk.report.checked += u.rows;
        walk.report.original_rows += u.rows;
        walk.report.unchained += u.rows - u.verified - u.mismatched - u.pseudonymized;
        walk.report.original_verified += u.verified;
        walk.report.hash_mismatches += u.mismatched;
        walk.report.unverifiable += u.pseudonymized;
        if u.first_bad_id.is_some() {
            walk.report.bad(u.first_bad_id);
        }
    } else {
        let unchained = count_unchained(&ext, from, to, legacy_only)?;
        walk.report.checked += unchained;
        walk.report.unchained += unchained;
    }
    let batch_sql = format!(
        "SELECT {ROW_COLUMNS} FROM {ext}.audit_log
          WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 AND chain_seq IS NOT NULL
            AND (coalesce(organization_id, ''), chain_seq, id) > ($3, $4, $5)
          ORDER BY coalesce(organization_id, ''), chain_seq, id
          LIMIT 1000"
    );
    let mut position: (String, i64, i64) = (String::new(), 0, 0);
    loop {
        let done = Spi::connect(|client| {
            let batch = client.select(
                batch_sql.as_str(),
                None,
                &[from.into(), to.into(), position.0.as_str().into(), position.1.into(), position.2.into()],
            )?;
            if batch.is_empty() {
                return Ok::<_, AuditError>(true);
            }
            for r in batch {
                let c = read_chained_row(&r)?;
                position = (c.row.organization_id.clone().unwrap_or_default(), c.seq.unwrap_or(0), c.row.id.unwrap_or(0));
                walk.check(c)?;
            }
            Ok(false)
        })?;
        if done {
            break;
        }
    }
    if from == TimestampWithTimeZone::negative_infinity() && to == TimestampWithTimeZone::positive_infinity() {
        walk.report.chain_breaks += lost_tails(&ext)?;
    }
    Ok(walk.report)
}

/// `audit_verify_integrity(from_ts, to_ts)` of 0.4.0 and 0.5.0 (frozen scripts name
/// this symbol); 0.6.0's is `verify::audit_verify_integrity_v2`.
#[pg_extern(volatile, parallel_unsafe, security_definer, sql = false)]
#[search_path(pg_catalog, pg_temp)]
fn audit_verify_integrity(
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
    ),
> {
    let from = from_ts.ok_or_else(|| AuditError::null_argument("from_ts")).or_report();
    let to = to_ts.ok_or_else(|| AuditError::null_argument("to_ts")).or_report();
    let r = verify(from, to, false).or_report();
    let failed = r.hash_mismatches + r.signature_mismatches + r.chain_breaks > 0;
    Spi::run_with_args(
        &q("INSERT INTO @extschema@.audit_integrity_log (audit_log_id, verification_timestamp, verification_status,
                                          verification_details, verified_by)
         VALUES (coalesce($1::int8, 0)::int4, pg_catalog.now(), $2,
                 pg_catalog.jsonb_build_object('from', $3::timestamptz, 'to', $4::timestamptz,
                     'checked', $5::int8, 'hash_mismatches', $6::int8, 'signature_mismatches', $7::int8,
                     'chain_breaks', $8::int8, 'unsigned', $9::int8, 'unchained', $10::int8,
                     'unverifiable', $11::int8), session_user)").or_report(),
        &[
            r.first_bad_id.into(),
            (if failed { "FAILED" } else { "PASSED" }).into(),
            from.into(),
            to.into(),
            r.checked.into(),
            r.hash_mismatches.into(),
            r.signature_mismatches.into(),
            r.chain_breaks.into(),
            r.unsigned.into(),
            r.unchained.into(),
            r.unverifiable.into(),
        ],
    )
    .map_err(AuditError::from)
    .or_report();
    if r.unsigned > 0 {
        pgrx::notice!("audit_db: {} of {} rows carry no signature (no key was configured when they were written)", r.unsigned, r.checked);
    }
    if r.unverifiable > 0 {
        pgrx::notice!("audit_db: {} rows could not be fully verified (forgotten subjects or no key)", r.unverifiable);
    }
    TableIterator::once((r.checked, r.hash_mismatches, r.signature_mismatches, r.chain_breaks, r.first_bad_id))
}

/// `audit_integrity_digest(upto)` of 0.4.0 and 0.5.0 (frozen scripts name this symbol).
#[pg_extern(stable, parallel_safe, security_definer, sql = false)]
#[search_path(pg_catalog, pg_temp)]
fn audit_integrity_digest(upto: default!(Option<TimestampWithTimeZone>, "now()")) -> pgrx::JsonB {
    let upto = upto.ok_or_else(|| AuditError::null_argument("upto")).or_report();
    Spi::get_one_with_args::<pgrx::JsonB>(
        &q("SELECT pg_catalog.jsonb_build_object(
                    'format', 'audit_db.digest.v1', 'upto', $1::timestamptz,
                    'chains', coalesce((SELECT pg_catalog.jsonb_object_agg(k, pg_catalog.jsonb_build_object(
                                                'head_seq', s, 'head_chain_hash', h, 'rows', n))
                                          FROM (SELECT coalesce(organization_id, '') AS k, pg_catalog.max(chain_seq) AS s,
                                                       (pg_catalog.array_agg(chain_hash ORDER BY chain_seq DESC))[1] AS h,
                                                       pg_catalog.count(*) AS n
                                                  FROM @extschema@.audit_log
                                                 WHERE \"timestamp\" <= $1 AND chain_seq IS NOT NULL
                                                 GROUP BY 1) c), '{}'::jsonb),
                    'retired', (SELECT coalesce(pg_catalog.sum(rows), 0) FROM @extschema@.audit_chain_retired))").or_report(),
        &[upto.into()],
    )
    .map_err(AuditError::from)
    .or_report()
    .unwrap_or(pgrx::JsonB(serde_json::json!({})))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn inserts_keep_the_application_hash_and_are_signed_tagged_and_verify() {
        Spi::run(
            "INSERT INTO audit_log (\"timestamp\", organization_id, action, status, hash)
             SELECT now(), 'pg-test-org', 'a' || i, 'ok', 'client' FROM generate_series(1, 3) i",
        )
        .expect("insert");
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(*) FROM audit_log
                  WHERE organization_id = 'pg-test-org' AND hash = 'client' AND signature LIKE 'test-1:%'
                    AND row_hash ~ '^[0-9a-f]{64}$' AND seal_epoch > 0 AND chain_seq IS NULL"
            )
            .expect("runs"),
            Some(3)
        );
        // One transaction, one epoch: still open here, so these rows are not sealed yet.
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(DISTINCT seal_epoch) FROM audit_log WHERE organization_id = 'pg-test-org'")
                .expect("runs"),
            Some(1)
        );
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT hash_mismatches + signature_mismatches + chain_breaks FROM audit_verify_integrity()"
            )
            .expect("runs"),
            Some(0)
        );
    }

    #[pg_test(error = "audit_log is append-only")]
    fn updates_are_refused() {
        Spi::run("INSERT INTO audit_log (\"timestamp\", action, status) VALUES (now(), 'x', 'ok')").expect("insert");
        Spi::run("UPDATE audit_log SET status = 'changed'").expect("refused");
    }
}
