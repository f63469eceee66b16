//! This database's part in replication (docs/scale-out.md), for every floor above:
//! whether it is an archive (it subscribes to `audit_log`), whether a replicated
//! subject command is replaying, and `emit`, which publishes a subject command to the
//! archives. The archive's SQL surface and the replay trigger are in
//! replication/archive.rs.

use crate::base::error::{AuditError, AuditResult};
use crate::base::keys::key_ring;
use crate::base::spi_util::q;
use audit_db_core::command::Command;
use audit_db_core::pseudonym;
use pgrx::prelude::*;
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
pub struct Replaying;

impl Drop for Replaying {
    fn drop(&mut self) {
        REPLAYING.with(|r| r.set(false));
    }
}

/// Marks this backend as replaying a command of the primary until the guard is dropped.
pub fn replaying_guard() -> Replaying {
    REPLAYING.with(|r| r.set(true));
    Replaying
}
