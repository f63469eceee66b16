//! Tamper evidence of 0.6.0: the insert trigger and epochs, the sealer,
//! verification and the per-row check.

pub mod row_check;
pub mod seal;
pub mod sealer;
pub mod verify;
