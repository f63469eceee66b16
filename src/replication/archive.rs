//! An archive cluster fed by logical replication (issue 16, part 2).
//!
//! What travels, and how (docs/scale-out.md has the reasoning):
//! * `audit_log`, `audit_seal_block` and `audit_subject_command`: **inserts only**
//!   (publication `<name>`, `publish_via_partition_root`). The archive's own
//!   partitions receive the rows; its retention is its own, because the primary's
//!   deletes (retention policies, dropped partitions, and any tampering) never reach it.
//!   The apply worker runs with `session_replication_role = replica`, so the seal
//!   trigger does not fire: rows keep the primary's hash, signature and epoch.
//! * `pseudonym_mapping`: inserts, updates and deletes (publication `<name>_mappings`),
//!   so tokens stay reversible and crypto-shredding reaches the archive.
//! * GDPR operations travel as **commands**, not as row changes: the archive holds
//!   rows the primary has dropped already, and an erasure must reach those too. Each
//!   subject function ends by inserting one row into `audit_subject_command` (the
//!   operation and its subject, encrypted under the root key) and deleting it again in
//!   the same transaction: the primary keeps nothing. On the archive, the
//!   `ENABLE REPLICA` trigger `audit_subject_command_replay` runs the same operation
//!   over the archive's rows and drops the command row.
//! * A database whose `audit_log` is subscribed is an archive: it never seals (its
//!   blocks are the primary's) and `audit_seal()` says so.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::key_ring;
use crate::base::spi_util::q;
use audit_db_core::command::Command;
use audit_db_core::pseudonym;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use std::cell::Cell;

thread_local! {
    /// Set while the archive replays a command of the primary.
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// `is_archive()`, as first seen by this backend's insert trigger.
    static ARCHIVE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// True while a replicated subject command runs on the archive: the operation then
/// writes no event of its own (the primary's arrives by replication), emits no command,
/// and records no new mapping (the archive's ids would collide with the primary's).
pub fn replaying() -> bool {
    REPLAYING.with(|r| r.get())
}

/// True when this database subscribes to `audit_log`: an archive. A read-only SELECT
/// (it also runs on a standby).
pub fn is_archive() -> AuditResult<bool> {
    subscribes(&crate::base::spi_util::ext_schema()?)
}

/// `is_archive()` for a caller that has the extension's (quoted) schema already.
pub fn subscribes(ext: &str) -> AuditResult<bool> {
    let log = format!("{ext}.audit_log");
    Ok(crate::base::spi_util::read_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel WHERE srrelid = $1::pg_catalog.regclass)",
        &[log.into()],
    )?
    .unwrap_or(false))
}

/// For the insert trigger: whether this is an archive, looked up once per backend (a
/// catalog read per insert would cost every writer on the primary). A backend that
/// inserted before CREATE SUBSCRIPTION keeps its first answer until it reconnects.
pub fn is_archive_cached() -> AuditResult<bool> {
    if let Some(known) = ARCHIVE.with(|a| a.get()) {
        return Ok(known);
    }
    let known = is_archive()?;
    ARCHIVE.with(|a| a.set(Some(known)));
    Ok(known)
}

/// The error of a local insert into audit_log on an archive: its epoch would collide
/// with the primary's blocks, and nothing on the archive ever seals it.
pub fn local_insert_refused() -> AuditError {
    AuditError::object_not_in_prerequisite_state("audit_log on an archive receives events from the primary only")
        .detail("This database subscribes to audit_log; a row written here would carry an epoch that no block of the primary covers.")
        .hint("Write events on the primary; they reach the archive by replication.")
}

/// Whether an audit_db function may record its own event in audit_log here: not while
/// replaying a command (the primary's event arrives by replication) and not on an
/// archive (see `local_insert_refused`). On an archive the event goes to the server log.
pub fn records_events(action: &str, description: &str) -> AuditResult<bool> {
    if replaying() {
        return Ok(false);
    }
    if is_archive()? {
        pgrx::log!("audit_db archive: {action} by {}: {description}", pgrx::spi::quote_identifier(&session_user()?));
        return Ok(false);
    }
    Ok(true)
}

fn session_user() -> AuditResult<String> {
    Ok(crate::base::spi_util::read_one::<String>("SELECT session_user::text", &[])?.unwrap_or_default())
}

/// Publishes `command` to an archive, if any subscribes: one row inserted into
/// `audit_subject_command` and deleted again. Logical decoding sends the insert (the
/// publication carries inserts only); the primary keeps no row, and its WAL holds the
/// subject encrypted under the root key. Not while replaying (no echo).
pub fn emit(command: &Command) -> AuditResult<()> {
    if replaying() {
        return Ok(());
    }
    let sealed = pseudonym::seal_original(key_ring()?.current(), &command.encode());
    // Two statements: a DELETE in the same statement as the INSERT (a data-modifying
    // CTE) would not see the inserted row, and the primary would keep it.
    let id = Spi::get_one_with_args::<i64>(
        &q("INSERT INTO @extschema@.audit_subject_command (operation, payload) VALUES ($1, $2) RETURNING id")?,
        &[command.name().into(), sealed.into()],
    )?
    .ok_or_else(|| AuditError::internal("INSERT ... RETURNING gave no id"))?;
    Spi::run_with_args(&q("DELETE FROM @extschema@.audit_subject_command WHERE id = $1")?, &[id.into()])?;
    Ok(())
}

/// Marks a replay until dropped, also when an error unwinds.
struct Replaying;

impl Drop for Replaying {
    fn drop(&mut self) {
        REPLAYING.with(|r| r.set(false));
    }
}

/// Runs a replicated command over this database's rows.
fn replay(command: Command) -> AuditResult<()> {
    REPLAYING.with(|r| r.set(true));
    let _replaying = Replaying;
    as_origin(|| crate::privacy::subject::run_command(command))
}

/// Runs `f` with `session_replication_role = origin` when the apply worker runs us
/// under `replica`: the append-only trigger (an ordinary trigger) must fire for the
/// replayed erasure, because it is what tallies the deleted rows into
/// `audit_seal_retired`. The apply worker set the role at PGC_S_OVERRIDE, so that is
/// the source used here, and the role is put back afterwards, also on error.
fn as_origin<R>(f: impl FnOnce() -> AuditResult<R>) -> AuditResult<R> {
    // SAFETY: reads a backend global.
    let was_replica = unsafe { pg_sys::SessionReplicationRole } == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;
    if !was_replica {
        return f();
    }
    set_replication_role(c"origin");
    let out = PgTryBuilder::new(std::panic::AssertUnwindSafe(f)).finally(|| set_replication_role(c"replica")).execute();
    out
}

fn set_replication_role(value: &std::ffi::CStr) {
    // SAFETY: both strings are NUL-terminated and outlive the call; the GUC exists in
    // every server version we build for, and ERROR is raised on a bad value.
    unsafe {
        pg_sys::set_config_option(
            c"session_replication_role".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        );
    }
}

/// BEFORE INSERT on audit_subject_command, `ENABLE REPLICA`: fires only in the apply
/// worker of an archive. Runs the primary's operation here and keeps no command row.
#[pg_trigger]
fn audit_subject_command_replay<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, pgrx::datum::TryFromDatumError> {
    let new = trigger.new().ok_or(pgrx::datum::TryFromDatumError::NoSuchAttributeName("new".into()))?;
    let payload = new.get_by_name::<String>("payload")?.unwrap_or_default();
    decode(&payload).and_then(replay).or_report();
    Ok(None)
}

/// The command of a payload written by `emit`.
fn decode(payload: &str) -> AuditResult<Command> {
    let ring = key_ring()?;
    let json = pseudonym::open_original(&ring, payload).map_err(|_| {
        AuditError::object_not_in_prerequisite_state("a replicated subject command cannot be decrypted here")
            .detail(format!(
                "It was encrypted under root key \"{}\", which this server's key file does not hold.",
                pseudonym::sealed_key_id(payload).unwrap_or("?")
            ))
            .hint("An archive needs the primary's root key file (docs/scale-out.md). Replication resumes once the key is there.")
    })?;
    Command::decode(&json).map_err(|e| AuditError::data_exception(format!("a replicated subject command is malformed: {e}")))
}

// ------------------------------------------------------------------ SQL surface

/// `audit_archive_publish(publication)`: see docs/scale-out.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_archive_publish(publication: default!(Option<&str>, "'audit_db_archive'")) -> SetOfIterator<'static, String> {
    let name = publication.ok_or_else(|| AuditError::null_argument("publication")).or_report();
    SetOfIterator::new(publish(name).or_report())
}

/// The two publications (created, or brought back to what they must be).
fn publish(name: &str) -> AuditResult<Vec<String>> {
    if crate::base::spi_util::in_recovery() {
        return Err(AuditError::read_only_transaction("a publication cannot be created on a hot standby")
            .hint("Run audit_archive_publish() on the primary."));
    }
    let mappings = format!("{name}_mappings");
    if mappings.len() >= pg_sys::NAMEDATALEN as usize {
        return Err(AuditError::name_too_long(format!("publication name \"{name}\" is too long"))
            .detail(format!("audit_db also creates \"{name}_mappings\", which must fit in {} bytes.", pg_sys::NAMEDATALEN - 1))
            .hint("Choose a shorter name."));
    }
    let ext = crate::base::spi_util::ext_schema()?;
    let events = ["audit_log", "audit_seal_block", "audit_subject_command"]
        .map(|t| format!("{ext}.{}", quote_identifier(t)))
        .join(", ");
    publication(name, &events, "insert")?;
    publication(&mappings, &format!("{ext}.pseudonym_mapping"), "insert, update, delete")?;
    Ok(vec![name.to_string(), mappings])
}

fn publication(name: &str, tables: &str, publish: &str) -> AuditResult<()> {
    let exists = Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1)",
        &[name.into()],
    )?
    .unwrap_or(false);
    let quoted = quote_identifier(name);
    let options = format!("publish = '{publish}', publish_via_partition_root = true");
    if exists {
        ours_or_callers(name)?;
        Spi::run(&format!("ALTER PUBLICATION {quoted} SET TABLE {tables}"))?;
        Spi::run(&format!("ALTER PUBLICATION {quoted} SET ({options})"))?;
    } else {
        Spi::run(&format!("CREATE PUBLICATION {quoted} FOR TABLE {tables} WITH ({options})"))?;
        Spi::run(&format!("COMMENT ON PUBLICATION {quoted} IS {}", pgrx::spi::quote_literal(PUBLICATION_MARK)))?;
    }
    Ok(())
}

/// What `audit_archive_publish` writes as the COMMENT of each publication it creates:
/// how it recognises its own later.
const PUBLICATION_MARK: &str = "audit_db archive publication (audit_archive_publish)";

/// An existing publication is changed only if audit_db made it (owned by the
/// extension's owner and marked with `PUBLICATION_MARK`) or the caller owns it: this
/// function runs as the extension's owner, who could rewrite anyone's publication
/// (issue 25: an application's publication, then a DBA's filtered one, started
/// publishing all of audit_log).
fn ours_or_callers(name: &str) -> AuditResult<()> {
    // SAFETY: reads backend state (the user that called this SECURITY DEFINER function).
    let caller = unsafe { pg_sys::GetOuterUserId() };
    let allowed = crate::base::spi_util::read_one::<bool>(
        "SELECT pg_catalog.pg_has_role($2, p.pubowner, 'USAGE')
             OR (p.pubowner OPERATOR(pg_catalog.=) e.extowner
                 AND pg_catalog.obj_description(p.oid, 'pg_publication') OPERATOR(pg_catalog.=) $3)
           FROM pg_catalog.pg_publication p, pg_catalog.pg_extension e
          WHERE p.pubname OPERATOR(pg_catalog.=) $1 AND e.extname OPERATOR(pg_catalog.=) 'audit_db'",
        &[name.into(), caller.into(), PUBLICATION_MARK.into()],
    )?
    .unwrap_or(false);
    if allowed {
        return Ok(());
    }
    Err(AuditError::duplicate_object(format!("publication \"{name}\" already exists and was not made by audit_db"))
        .detail("audit_db changes only publications it created or the caller owns.")
        .hint("Pass another name: SELECT audit_archive_publish('audit_db_archive2');"))
}

/// `audit_archive_prepare()`: see docs/scale-out.md.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn audit_archive_prepare() -> String {
    prepare().or_report()
}

fn prepare() -> AuditResult<String> {
    if crate::base::spi_util::in_recovery() {
        return Err(AuditError::read_only_transaction("a hot standby cannot become an archive")
            .hint("Prepare a primary server's database, with audit_db installed and nothing in audit_log."));
    }
    // Signatures verify on the archive only with the primary's key, and replicated
    // subject commands decrypt only with it.
    key_ring()?;
    for (table, what) in [("audit_log", "events"), ("audit_seal_block", "seal blocks")] {
        let any = Spi::get_one::<bool>(&q(&format!("SELECT EXISTS (SELECT 1 FROM @extschema@.{table})"))?)?.unwrap_or(false);
        if any {
            return Err(AuditError::object_not_in_prerequisite_state(format!(
                "this database holds {what} of its own: it cannot become an archive"
            ))
            .detail(format!("{table} is not empty. An archive's rows and blocks come from the primary only; its own would collide with them."))
            .hint("Prepare a new database: CREATE EXTENSION audit_db there, then run audit_archive_prepare() before CREATE SUBSCRIPTION."));
        }
    }
    // Rows of periods the archive has no partition for (the primary's oldest months,
    // copied first) land in the DEFAULT partition instead of stopping replication.
    Spi::run(&q("UPDATE @extschema@.audit_partition_config SET default_partition = true
                  WHERE parent = '@extschema@.audit_log'::pg_catalog.regclass")?)?;
    let parent = crate::partitions::partition::Parent::load(crate::base::regclass::Regclass(
        Spi::get_one::<pg_sys::Oid>(&q("SELECT '@extschema@.audit_log'::pg_catalog.regclass::pg_catalog.oid")?)?
            .ok_or_else(|| AuditError::internal("audit_log is missing"))?,
    ))?;
    if parent.default_partition.is_none() {
        crate::partitions::partition::create_default_partition(&parent)?;
    }
    Ok("ready: now run CREATE SUBSCRIPTION audit_db_archive CONNECTION '<the primary>' \
        PUBLICATION audit_db_archive, audit_db_archive_mappings"
        .to_string())
}
