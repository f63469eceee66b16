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
//!
//! Whether this database is an archive, whether a command is replaying, and `emit`
//! (the primary's side of a command) are in base/archive_role.rs, for the floors below.

use crate::base::error::{AuditError, AuditResult, OrReport};
use crate::base::keys::key_ring;
use crate::base::spi_util::q;
use audit_db_core::command::Command;
use audit_db_core::pseudonym;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// Runs a replicated command over this database's rows.
fn replay(command: Command) -> AuditResult<()> {
    let _replaying = crate::base::archive_role::replaying_guard();
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

/// The command of a payload written by `archive_role::emit`.
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
    // The references kept for forgotten pseudonyms go with the mappings: the archive
    // checks rows that still carry them (its replayed forget writes none of its own).
    publication(&mappings, &format!("{ext}.pseudonym_mapping, {ext}.pseudonym_forgotten"), "insert, update, delete")?;
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
