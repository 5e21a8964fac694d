//! Flag values shared by the commands, at the bottom of the edges: the
//! range-checked parsers of durations, byte sizes and counts (each message
//! with examples), the bounds every command that reviews shares, the log
//! format, and the dry runs' default uid. Nothing here names a command.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// The admission uid of a dry run when none is given (`--uid`, a case's
/// `uid:`).
pub const DEFAULT_UID: &str = "00000000-0000-0000-0000-000000000000";

/// The bounds on one review's patch (SPEC §5 "Bounded"), shared by `serve`,
/// `mutate`, `test` and `explain` so a dry run answers as the server does.
#[derive(Debug, Clone, Copy, Args)]
pub struct BoundsArgs {
    /// Largest JSON Patch (before base64) the webhook answers with; a pod
    /// whose patch would be larger is denied. etcd keeps objects of at most
    /// 1.5 MiB, so more than 1 MiB of patch cannot make a pod it stores.
    #[arg(
        long,
        value_name = "BYTES",
        env = "PERSISTENCE_WEBHOOK_MAX_PATCH_BYTES",
        default_value_t = crate::bounds::DEFAULT_MAX_PATCH_BYTES,
        value_parser = clap::value_parser!(u64).range(1..=1024 * 1024 * 1024)
    )]
    pub max_patch_bytes: u64,

    /// Most mounts and env vars injected into one pod, counted as targeted
    /// containers × (mounts + env vars each); a pod past it is denied.
    #[arg(
        long,
        value_name = "N",
        env = "PERSISTENCE_WEBHOOK_MAX_INJECTED_ITEMS",
        default_value_t = crate::bounds::DEFAULT_MAX_INJECTED_ITEMS,
        value_parser = clap::value_parser!(u64).range(1..=100_000_000)
    )]
    pub max_injected_items: u64,
}

impl From<BoundsArgs> for crate::bounds::Bounds {
    fn from(args: BoundsArgs) -> Self {
        let BoundsArgs {
            max_patch_bytes,
            max_injected_items,
        } = args;
        crate::bounds::Bounds {
            max_patch_bytes,
            max_injected_items,
        }
    }
}

/// `serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// A duration flag in human form (`500ms`, `10s`, `2m`): humantime's parser,
/// with examples in the message. Dereferences to a [`std::time::Duration`].
pub(crate) fn human_duration(s: &str) -> Result<humantime::Duration, String> {
    s.parse::<humantime::Duration>()
        .map_err(|e| format!("{e} (examples: 500ms, 10s, 2m)"))
}

/// A duration flag between `MIN_MS` and `MAX_MS` milliseconds: a zero or
/// absurd limit would disable the server rather than bound it.
pub(crate) fn duration_in<const MIN_MS: u64, const MAX_MS: u64>(
    s: &str,
) -> Result<humantime::Duration, String> {
    let d = human_duration(s)?;
    let (min, max) = (Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS));
    if *d < min || *d > max {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// A byte-size flag between `MIN` and `MAX`.
pub(crate) fn bytes_in<const MIN: usize, const MAX: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("{e} (a number of bytes, e.g. 4194304)"))?;
    if !(MIN..=MAX).contains(&n) {
        return Err(format!("must be between {MIN} and {MAX} bytes"));
    }
    Ok(n)
}

/// A count flag between `MIN` and `MAX`.
pub(crate) fn count_in<const MIN: usize, const MAX: usize>(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if !(MIN..=MAX).contains(&n) {
        return Err(format!("must be between {MIN} and {MAX}"));
    }
    Ok(n)
}
