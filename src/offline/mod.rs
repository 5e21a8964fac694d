//! The offline wing: what the commands that need no cluster share, and
//! what live `explain` and `check` take from them. Nothing here reads a
//! flag or names a command; the commands above read the files and flags
//! and call down.
//!
//! - [`io`]: the readers the offline commands share (a file or stdin, the
//!   config, a review) and their JSON printing;
//! - [`manifests`]: YAML streams, JSON values and `List`s in, objects with
//!   their positions, and the stream back out;
//! - [`workload`]: which kinds carry a pod template, and the pod each
//!   controller creates from it;
//! - [`dry_run`]: one object decided offline, as the API server would send
//!   it, with the patch carried back onto it;
//! - [`account`]: the account of one review, told by offline and live
//!   `explain`.

pub mod account;
pub mod dry_run;
pub mod io;
pub mod manifests;
pub mod workload;
