//! The offline wing: what the commands that need no cluster share, and
//! what live `explain` and `check` take from them. Nothing here reads a
//! flag or names a command; the commands above read the files and flags
//! and call down.
//!
//! - [`account`]: the account of one review, told by offline and live
//!   `explain`.

pub mod account;
