//! Tamper evidence of 0.6.0: the anchor, the insert trigger and epochs, the sealer,
//! verification and the per-row check, the append-only guards, and the retirement
//! of rows that leave.

pub mod anchor;
pub mod append_only;
pub mod retirement;
pub mod row_check;
pub mod seal;
pub mod sealer;
pub mod verify;
