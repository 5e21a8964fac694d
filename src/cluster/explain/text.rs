//! The live part of `explain`'s answer in plain words, followed by the
//! account of today's review.

use super::{ConfigSource, Live};
use crate::offline::account::Account;
use crate::vocabulary::ANNOTATION_INJECTED;

/// The live part in plain words, then the account of today's review
/// against the config from `source`.
pub fn text(live: &Live, today: &Account, source: &ConfigSource) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "live pod {}: {}", live.pod, live.verdict.as_str());
    let _ = writeln!(s, "  {}", live.why);
    let route = match live.path.route {
        super::route::Way::Webhook => "the webhook",
        super::route::Way::Policy => "the admission policies",
        super::route::Way::Both => "both the webhook and the admission policies",
        super::route::Way::Neither => "neither the webhook nor the admission policies",
    };
    let _ = writeln!(
        s,
        "path: {route}{}\n  {}",
        live.path
            .decided_by
            .as_deref()
            .map(|d| format!(" (decided by {d})"))
            .unwrap_or_default(),
        live.path.why
    );
    if let Some(unread) = &live.path.policies_unread {
        let _ = writeln!(
            s,
            "  (as if no admission policy of ours were installed: {unread})"
        );
    }
    if let Some(got) = &live.got {
        let _ = writeln!(s, "\nit got (from its {ANNOTATION_INJECTED} annotation):");
        let _ = writeln!(
            s,
            "  data {}",
            if got.data.is_empty() {
                "none".to_owned()
            } else {
                got.data.join(", ")
            }
        );
        let _ = writeln!(
            s,
            "  outputs {} at {}",
            got.outputs.as_deref().unwrap_or("none"),
            got.outputs_path.as_deref().unwrap_or("none")
        );
        for c in &live.containers {
            let kind = if c.init {
                "init container"
            } else {
                "container"
            };
            if c.env.is_empty() && c.mounts.is_empty() && c.keeps_own.is_empty() {
                let _ = writeln!(s, "  {kind} {}: nothing of the webhook's", c.name);
                continue;
            }
            let _ = writeln!(s, "  {kind} {}:", c.name);
            for m in &c.mounts {
                let _ = writeln!(s, "    mount {m}");
            }
            if !c.env.is_empty() {
                let _ = writeln!(s, "    env {}", c.env.join(", "));
            }
            if !c.keeps_own.is_empty() {
                let _ = writeln!(s, "    keeps its own {}", c.keeps_own.join(", "));
            }
        }
    }
    if !live.differences.is_empty() {
        let _ = writeln!(s, "\ntoday's config differs:");
        for d in &live.differences {
            let _ = writeln!(s, "  {}: had {}, today {}", d.field, d.had, d.today);
        }
    }
    let _ = writeln!(
        s,
        "\nwhat the webhook would do with it now (today's config: {source}):"
    );
    s.push_str(&crate::offline::account::text(today));
    s
}
