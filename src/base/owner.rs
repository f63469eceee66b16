//! Running audit_db's work as another role, the way PostgreSQL's VACUUM, ANALYZE,
//! REINDEX and foreign-key checks run a table's code as its owner: no SET ROLE,
//! nothing the session can see, a restricted context (no temporary objects, no
//! session state changes) and, for as long as the switch lasts, `search_path =
//! pg_catalog, pg_temp`, so that no name or operator the statements use resolves in a
//! schema the caller chose (issue 25: the insert trigger runs with the writer's
//! search_path and switches to the extension's owner for its lookups).

use pgrx::pg_sys;

/// The switch; dropping it puts the user, the security context and the settings back.
pub struct UserSwitch {
    user: pg_sys::Oid,
    context: i32,
    guc_level: i32,
}

impl UserSwitch {
    /// Runs as the role that called the outermost SECURITY DEFINER function (the
    /// session's current role, as SET ROLE left it), for work on a table audit_db does
    /// not own that the caller asked for: its privileges and row-level security apply.
    pub fn to_caller() -> Self {
        // SAFETY: reads backend state.
        Self::to(unsafe { pg_sys::GetOuterUserId() })
    }

    /// Runs as `owner` from now until the guard is dropped.
    pub fn to(owner: pg_sys::Oid) -> Self {
        let mut user = pg_sys::InvalidOid;
        let mut context: i32 = 0;
        // SAFETY: reads and sets backend globals; the guard puts them back. The setting
        // is made before the switch (a restricted context refuses some settings) at
        // a nesting level of its own, as fmgr_security_definer does for a SET clause.
        let guc_level = unsafe {
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog, pg_temp".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
            level
        };
        UserSwitch { user, context, guc_level }
    }
}

impl Drop for UserSwitch {
    fn drop(&mut self) {
        // SAFETY: restores what `to` saved. While an error unwinds, the transaction's
        // (or subtransaction's) abort restores the settings, as it does for a SET
        // clause; only the user is put back here.
        unsafe {
            if !std::thread::panicking() {
                pg_sys::AtEOXact_GUC(true, self.guc_level);
            }
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
        }
    }
}
