//! Taking a parent's locks without stalling its writers (issue 19).
//!
//! A lock request that waits queues every later request behind it: while maintenance
//! waits for ACCESS EXCLUSIVE on a parent that a long reader (a report, pg_dump) holds
//! ACCESS SHARE on, every insert into that parent waits behind maintenance. So no
//! attempt waits long: each one runs in a subtransaction under a short `lock_timeout`
//! (`audit_db.lock_attempt_timeout`, 50 ms by default); when it times out, the
//! subtransaction is rolled back (releasing whatever it had locked, so the writers
//! behind it go on), maintenance sleeps with a growing backoff, and tries again until
//! the parent's window (`audit_partition_config.lock_timeout`) is spent. Writers wait
//! at most one attempt; maintenance gets its lock as soon as the reader is gone.

use crate::base::subxact::{try_in_subtransaction, Caught};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::time::Instant;

/// Milliseconds one lock attempt may wait.
pub static LOCK_ATTEMPT_MS: GucSetting<i32> = GucSetting::<i32>::new(50);

/// The longest sleep between two attempts.
const MAX_BACKOFF_MS: i64 = 400;

pub fn register_gucs() {
    GucRegistry::define_int_guc(
        c"audit_db.lock_attempt_timeout",
        c"Milliseconds one lock attempt of partition maintenance may wait before it backs off and retries.",
        c"Writers of a parent wait at most this long behind maintenance; audit_partition_config.lock_timeout bounds all attempts together.",
        &LOCK_ATTEMPT_MS,
        1,
        60_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}

/// How a run of attempts ended.
#[derive(Debug)]
pub struct Attempts<R> {
    pub result: Result<R, Caught>,
    pub attempts: u32,
    pub attempt_ms: i64,
}

impl<R> Attempts<R> {
    /// "N attempts of M ms within W ms" ("one attempt of M ms" when the window allowed
    /// no retry), for reports.
    pub fn describe(&self, window_ms: i64) -> String {
        if self.attempts == 1 && window_ms <= self.attempt_ms {
            return format!("one attempt of {} ms", self.attempt_ms);
        }
        let noun = if self.attempts == 1 { "attempt" } else { "attempts" };
        format!("{} {noun} of {} ms within {window_ms} ms", self.attempts, self.attempt_ms)
    }
}

/// The time one attempt may wait (a window this long means a single attempt).
pub fn attempt_ms() -> i64 {
    i64::from(LOCK_ATTEMPT_MS.get()).max(1)
}

fn set_lock_timeout(ms: i64) -> Result<(), Caught> {
    crate::base::spi_util::set_lock_timeout(&format!("{ms}ms")).map_err(|e| Caught {
        sqlstate: "XX000".into(),
        message: e.message,
    })
}

/// Runs `f` in a subtransaction under a short lock_timeout, again and again while it
/// fails on a lock timeout (55P03) and `window_ms` is not spent. Any other error ends
/// the attempts at once; a cancel is re-raised (see `try_in_subtransaction`).
/// Leaves `lock_timeout` at the attempt value: callers restore the session's.
pub fn with_lock_retries<R>(window_ms: i64, mut f: impl FnMut() -> R) -> Attempts<R> {
    let attempt_ms = attempt_ms().min(window_ms.max(1));
    let start = Instant::now();
    let mut backoff_ms = attempt_ms.min(MAX_BACKOFF_MS);
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Err(caught) = set_lock_timeout(attempt_ms) {
            return Attempts { result: Err(caught), attempts, attempt_ms };
        }
        let result = try_in_subtransaction(&mut f);
        let spent = start.elapsed().as_millis() as i64;
        match result {
            Err(caught) if caught.is_lock_timeout() && spent + backoff_ms + attempt_ms <= window_ms => {
                // The subtransaction released its locks: the writers queued behind
                // this attempt go on while we sleep.
                // SAFETY: a plain sleep; interrupts are checked right after it.
                unsafe { pg_sys::pg_usleep(backoff_ms * 1000) };
                pgrx::check_for_interrupts!();
                backoff_ms = (backoff_ms * 2).min(MAX_BACKOFF_MS);
            }
            result => return Attempts { result, attempts, attempt_ms },
        }
    }
}
