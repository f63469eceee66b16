//! The root key: read by the server from `audit_db.key_file` (or the output of
//! `audit_db.key_command`), never through SQL. Both settings are PGC_SIGHUP and
//! superuser-only; the library must be in `shared_preload_libraries`.
//!
//! A file that group or others can access is refused, as PostgreSQL refuses such an
//! SSL key. Each backend caches the parsed key ring and re-reads the file when its
//! modification or change time, size, inode or mode changes (checked at each statement;
//! by the insert trigger at most every 100 ms, see `key_ring_for_inserts`); the command
//! is run once per backend and again when the setting changes. Errors name the
//! setting, never key material.

use crate::base::error::{AuditError, AuditResult};
use pgrx::pg_sys;
use audit_db_core::crypto::{check_key_file_mode, KeyError, KeyRing};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::cell::RefCell;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;

pub static KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static KEY_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static PERSONAL_DETAILS_KEYS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"email,ipAddress,userAgent,name,phone"));

pub fn register_gucs() {
    GucRegistry::define_string_guc(
        c"audit_db.key_file",
        c"Path of the audit_db root key file (lines \"<key_id> <64 hex>\", last = current).",
        c"Must be readable by the server's OS user only. Set in postgresql.conf; reload to change.",
        &KEY_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"audit_db.key_command",
        c"Program whose output is the audit_db key file contents (for a KMS); used when key_file is empty.",
        c"Run by the server through /bin/sh once per backend. Set in postgresql.conf; reload to change.",
        &KEY_COMMAND,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"audit_db.personal_details_keys",
        c"Comma-separated keys of audit_log.details whose string values are personal data.",
        c"audit_pseudonymize_subject() pseudonymizes them together with the principal.",
        &PERSONAL_DETAILS_KEYS,
        GucContext::Suset,
        GucFlags::default(),
    );
}

thread_local! {
    /// The setting's text and its parsed list, reparsed only when the text changes
    /// (the insert trigger reads it for every row).
    static PERSONAL_KEYS: RefCell<(Option<CString>, Rc<Vec<String>>)> = RefCell::new((None, Rc::new(Vec::new())));
}

/// The details keys that hold personal data.
pub fn personal_details_keys() -> Rc<Vec<String>> {
    let raw = PERSONAL_DETAILS_KEYS.get();
    PERSONAL_KEYS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != raw {
            let parsed = raw
                .as_ref()
                .and_then(|c| c.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            *cache = (raw, Rc::new(parsed));
        }
        Rc::clone(&cache.1)
    })
}

#[derive(PartialEq, Eq, Clone)]
enum Source {
    File { path: String, mtime: i64, mtime_ns: i64, ctime_ns: i64, size: u64, ino: u64, mode: u32 },
    Command(String),
}

thread_local! {
    static CACHE: RefCell<Option<(Source, Rc<KeyRing>)>> = const { RefCell::new(None) };
    /// The statement that last validated CACHE: within one statement the settings
    /// cannot change (SIGHUP is processed between statements) and the file is stat()ed
    /// once, not once per row.
    static CHECKED_AT: std::cell::Cell<i64> = const { std::cell::Cell::new(i64::MIN) };
}

/// Identifies the running statement (the same in its parallel workers): caches that
/// hold for one statement compare it.
pub fn statement_stamp() -> i64 {
    // SAFETY: plain reads of backend state.
    unsafe { pg_sys::GetCurrentStatementStartTimestamp() ^ (i64::from(pg_sys::GetCurrentCommandId(false)) << 1) }
}

fn key_error(e: KeyError, what: &str) -> AuditError {
    AuditError::object_not_in_prerequisite_state(format!("audit_db key {what} refused: {e}"))
        .hint("Fix the file named by audit_db.key_file (chmod 600, lines \"<key_id> <64 hex characters>\").")
}

fn preloaded() -> bool {
    // SAFETY: a plain read of a PostgreSQL global.
    let in_progress = unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress };
    in_progress
        || pgrx::spi::Spi::get_one::<String>("SELECT pg_catalog.current_setting('shared_preload_libraries')")
            .ok()
            .flatten()
            .map(|s| s.split(',').any(|l| l.trim().trim_matches('"') == "audit_db"))
            .unwrap_or(false)
}

/// The key ring, loaded or from this backend's cache.
pub fn key_ring() -> AuditResult<Rc<KeyRing>> {
    let stamp = statement_stamp();
    if CHECKED_AT.with(|c| c.get()) == stamp {
        if let Some(ring) = CACHE.with(|c| c.borrow().as_ref().map(|(_, r)| Rc::clone(r))) {
            return Ok(ring);
        }
    }
    let ring = load_key_ring()?;
    CHECKED_AT.with(|c| c.set(stamp));
    Ok(ring)
}

/// Whether a key setting's value names a key source (unset and empty do not).
fn names_a_source(setting: &Option<CString>) -> bool {
    setting.as_ref().is_some_and(|c| !c.as_bytes().is_empty())
}

/// Whether audit_db.key_file or audit_db.key_command names a key source.
pub fn key_configured() -> bool {
    names_a_source(&KEY_FILE.get()) || names_a_source(&KEY_COMMAND.get())
}

/// How long, in microseconds of statement start time, the insert trigger signs with the
/// ring it last had `key_ring()` check against the key file.
const INSERT_RECHECK_US: i64 = 100_000;

/// Statement start of a check of the insert trigger's ring, and the settings
/// (`audit_db.key_file`, `audit_db.key_command`) it was made under.
type InsertCheck = (i64, Option<CString>, Option<CString>);

thread_local! {
    /// When the insert trigger's ring was last checked (statement start), and under
    /// which settings.
    static INSERT_CHECKED: RefCell<Option<InsertCheck>> = const { RefCell::new(None) };
}

/// The key ring for signing new audit_log rows: `key_ring()`, except that the key file
/// is stat()ed at most once per 100 ms rather than once per statement. That stat was
/// half of the insert trigger's time with one row per statement (a path walk in the
/// kernel each time). The cost: a key line added to the file signs new rows up to
/// 100 ms later; until then the previous current key, which stays in the file, signs
/// them, so those rows verify as well. A change of audit_db.key_file or
/// audit_db.key_command applies at once, and every other use of the key (pseudonyms,
/// sealing, verification) checks the file at each statement.
///
/// None when neither setting names a key source.
pub fn key_ring_for_inserts() -> Option<AuditResult<Rc<KeyRing>>> {
    let settings = (KEY_FILE.get(), KEY_COMMAND.get());
    if !names_a_source(&settings.0) && !names_a_source(&settings.1) {
        return None;
    }
    // SAFETY: a plain read of backend state.
    let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    let fresh = INSERT_CHECKED.with(|c| {
        c.borrow().as_ref().is_some_and(|(at, file, command)| {
            (0..INSERT_RECHECK_US).contains(&now.wrapping_sub(*at)) && (file, command) == (&settings.0, &settings.1)
        })
    });
    if fresh {
        if let Some(ring) = CACHE.with(|c| c.borrow().as_ref().map(|(_, r)| Rc::clone(r))) {
            return Some(Ok(ring));
        }
    }
    let ring = key_ring();
    if ring.is_ok() {
        INSERT_CHECKED.with(|c| *c.borrow_mut() = Some((now, settings.0, settings.1)));
    }
    Some(ring)
}

fn load_key_ring() -> AuditResult<Rc<KeyRing>> {
    let path = KEY_FILE.get().and_then(|c| c.into_string().ok()).filter(|s| !s.is_empty());
    let command = KEY_COMMAND.get().and_then(|c| c.into_string().ok()).filter(|s| !s.is_empty());
    let source = match (&path, &command) {
        (Some(path), _) => {
            let meta = std::fs::metadata(path).map_err(|e| {
                AuditError::object_not_in_prerequisite_state(format!(
                    "audit_db key file \"{path}\" cannot be read: {e}"
                ))
                .hint("Point audit_db.key_file at a file the server can read, with lines \"<key_id> <64 hex characters>\".")
            })?;
            Source::File {
                path: path.clone(),
                mtime: meta.mtime(),
                mtime_ns: meta.mtime_nsec(),
                ctime_ns: meta.ctime_nsec(),
                size: meta.size(),
                ino: meta.ino(),
                mode: meta.mode(),
            }
        }
        (None, Some(cmd)) => Source::Command(cmd.clone()),
        (None, None) => {
            if !preloaded() {
                return Err(AuditError::object_not_in_prerequisite_state(
                    "audit_db is not loaded through shared_preload_libraries",
                )
                .hint("Add audit_db to shared_preload_libraries, set audit_db.key_file in postgresql.conf and restart."));
            }
            return Err(AuditError::object_not_in_prerequisite_state("no audit_db root key is configured")
                .hint("Set audit_db.key_file (or audit_db.key_command) in postgresql.conf and reload."));
        }
    };
    if let Some(ring) = CACHE.with(|c| {
        c.borrow().as_ref().filter(|(s, _)| *s == source).map(|(_, r)| Rc::clone(r))
    }) {
        return Ok(ring);
    }
    let text = match &source {
        Source::File { path, mode, .. } => {
            // The mode was read with the rest of the file's identity above.
            check_key_file_mode(*mode).map_err(|e| key_error(e, "file"))?;
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                AuditError::object_not_in_prerequisite_state(format!("audit_db key file \"{path}\" cannot be read: {e}"))
                    .hint("Check audit_db.key_file.")
            })?)
        }
        Source::Command(cmd) => {
            let out = run_key_command(cmd)?;
            if !out.status.success() {
                return Err(AuditError::object_not_in_prerequisite_state(format!(
                    "audit_db.key_command failed with {}",
                    out.status
                ))
                .hint("Check audit_db.key_command; its standard output must be lines \"<key_id> <64 hex characters>\"."));
            }
            zeroize::Zeroizing::new(String::from_utf8(out.stdout).map_err(|_| {
                AuditError::object_not_in_prerequisite_state("audit_db.key_command printed non-UTF-8 output")
                    .hint("Check audit_db.key_command.")
            })?)
        }
    };
    let ring = Rc::new(KeyRing::parse(&text).map_err(|e| {
        key_error(e, if matches!(source, Source::File { .. }) { "file" } else { "command output" })
    })?);
    CACHE.with(|c| *c.borrow_mut() = Some((source, Rc::clone(&ring))));
    Ok(ring)
}

/// How long `audit_db.key_command` may run, and how much it may print: a command that
/// hangs would otherwise hold every new backend's first insert (issue 25).
const KEY_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const KEY_COMMAND_MAX_OUTPUT: u64 = 64 * 1024;

/// Runs the key command with no input, its standard error discarded (it may name
/// secrets), its output read up to `KEY_COMMAND_MAX_OUTPUT` bytes, within
/// `KEY_COMMAND_TIMEOUT`; killed past either, or when the query is cancelled.
fn run_key_command(cmd: &str) -> AuditResult<std::process::Output> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let failed = |what: String| {
        AuditError::object_not_in_prerequisite_state(format!("audit_db.key_command {what}")).hint(format!(
            "Check audit_db.key_command: it must print the key lines within {} s and {} bytes.",
            KEY_COMMAND_TIMEOUT.as_secs(),
            KEY_COMMAND_MAX_OUTPUT
        ))
    };
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| failed(format!("could not be run: {e}")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    // The reader thread touches no PostgreSQL state: it only reads the pipe.
    let (sender, output) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = sender.send(stdout.take(KEY_COMMAND_MAX_OUTPUT + 1).read_to_end(&mut buf).map(|_| buf));
    });
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(failed(format!("could not be waited for: {e}"))),
        }
        // SAFETY: reads a backend global set by signal handlers.
        let interrupted = unsafe { pg_sys::InterruptPending } != 0;
        if started.elapsed() > KEY_COMMAND_TIMEOUT || interrupted {
            let _ = child.kill();
            let _ = child.wait();
            if interrupted {
                pgrx::check_for_interrupts!();
            }
            return Err(failed(format!("did not finish within {} s and was killed", KEY_COMMAND_TIMEOUT.as_secs())));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    // (A process the command left behind may hold the pipe open: wait no longer.)
    let stdout = output
        .recv_timeout(KEY_COMMAND_TIMEOUT.saturating_sub(started.elapsed()))
        .map_err(|_| failed(format!("output did not end within {} s", KEY_COMMAND_TIMEOUT.as_secs())))?
        .map_err(|e| failed(format!("output could not be read: {e}")))?;
    if stdout.len() as u64 > KEY_COMMAND_MAX_OUTPUT {
        return Err(failed(format!("printed more than {KEY_COMMAND_MAX_OUTPUT} bytes")));
    }
    Ok(std::process::Output { status, stdout, stderr: Vec::new() })
}

/// The key ring for signing and checking: None when no key is configured, an error
/// when one is configured but cannot be used (issue 25: evidence is signed or the
/// write is refused; what cannot be checked is never a pass).
pub fn signing_ring() -> AuditResult<Option<Rc<KeyRing>>> {
    if !key_configured() {
        return Ok(None);
    }
    key_ring().map(Some)
}

/// Whether `signature` (`key_id:hex`) is the HMAC of `hash` under that key of `ring`;
/// false for a key the ring lacks.
pub fn signed_by(ring: &KeyRing, hash: &str, signature: &str) -> bool {
    signature
        .split_once(':')
        .and_then(|(id, mac)| ring.get(id).map(|k| audit_db_core::integrity::mac_matches(k, hash, mac)))
        .unwrap_or(false)
}
