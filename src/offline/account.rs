//! The account of one review (SPEC §8): what the webhook does with a pod
//! and why, recorded by the same review `serve` and `mutate` make
//! ([`crate::review::review_traced`]), with the config's stores the pod
//! does not get, and the account in plain words. Pure: offline `explain`
//! reads the input and live `explain` the cluster; both tell the result
//! through this one account.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::{Serialize, Serializer};

use crate::config::{Config, Role};
use crate::review::{review_traced, Decision, Outcome, Trace};
use crate::selection::OutputsChoice;

/// At most this many stores are listed as left out, per role.
const LEFT_OUT_LISTED: usize = 20;

/// What the webhook does with one pod, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Account {
    /// `namespace/name` (or `namespace/generateName*`).
    pub pod: String,
    /// `patched`, `unchanged`, `denied` or `invalid`.
    #[serde(serialize_with = "outcome_name")]
    pub outcome: Outcome,
    /// The stable reason when not patched (`already-injected`, `opted-out`,
    /// `unknown-store`, ...).
    pub reason: Option<String>,
    /// The field concerned by a denial.
    pub field: Option<String>,
    /// The denial's message, for the pod's author.
    pub message: Option<String>,
    /// The data stores the pod gets, each with why.
    pub data: Vec<StoreAccount>,
    /// The outputs store, with why and where the run writes.
    pub outputs: Option<OutputsAccount>,
    /// Stores of the config the pod does not get, with why.
    pub left_out: Vec<LeftOut>,
    /// Stores not listed in `left_out` (past the first 20 of a role).
    pub left_out_more: usize,
    /// Every container and init container: what it receives and keeps.
    pub containers: Vec<ContainerAccount>,
    /// The response's warnings (SPEC §8).
    pub warnings: Vec<String>,
    /// The response's audit annotations (a patched pod only).
    pub audit_annotations: BTreeMap<String, String>,
}

/// A data store the pod gets.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreAccount {
    /// The store.
    pub store: String,
    /// Its mount path or bucket.
    pub path: String,
    /// `asked for`, or `all data by default`.
    pub why: String,
}

/// The outputs store the pod gets.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutputsAccount {
    /// The store.
    pub store: String,
    /// `<mountPath or bucket>/<sub-path>`.
    pub path: String,
    /// The run's sub-path.
    pub sub_path: String,
    /// `asked for`, `defaultOutputs`, or `first available by name`.
    pub why: String,
    /// The rule that gave the sub-path.
    pub sub_path_rule: String,
    /// For a kept recorded path: what today's rules give instead.
    pub today: Option<String>,
}

/// A store the pod does not get.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeftOut {
    /// The store.
    pub store: String,
    /// `data` or `outputs`.
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    /// `not asked for`, `not granted to namespace X`, ...
    pub why: String,
}

/// One container or init container.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerAccount {
    /// Its name.
    pub name: String,
    /// Whether the selection targets it (`containers:`).
    pub targeted: bool,
    /// The mounts it receives (path, volume, options, store).
    pub mounts: Vec<String>,
    /// The env vars it receives.
    pub env: Vec<String>,
    /// SDK variables it sets itself and keeps.
    pub keeps_own: Vec<String>,
    /// The webhook's variables it therefore does not get.
    pub left_out: Vec<String>,
}

/// The account of one AdmissionReview body: the review `serve` makes,
/// traced, and the config's other stores with why the pod does not get them.
pub fn account(config: &Config, bounds: &crate::Bounds, body: &[u8]) -> Result<Account> {
    let mut trace = Trace::default();
    let reviewed = review_traced(config, bounds, body, Some(&mut trace))
        .map_err(|e| anyhow!("not a reviewable AdmissionReview: {e}"))?;
    let subject = &reviewed.subject;
    let namespace = subject.namespace.as_str();
    let (reason, field, message) = match &reviewed.decision {
        Decision::Patched(_) => (None, None, None),
        Decision::Unchanged(skip) => (Some(skip.reason().to_string()), None, None),
        Decision::Denied(d) => (
            Some(d.reason().to_string()),
            d.field().map(str::to_owned),
            Some(d.to_string()),
        ),
        Decision::Invalid(m) => (Some("malformed".to_owned()), None, Some(m.clone())),
    };
    let data_why = if trace.data_by_default {
        "all data by default"
    } else {
        "asked for"
    };
    let data = trace
        .data
        .iter()
        .map(|(store, path)| StoreAccount {
            store: store.clone(),
            path: path.clone(),
            why: data_why.to_owned(),
        })
        .collect();
    let outputs = trace.outputs.as_ref().map(|o| OutputsAccount {
        store: o.store.clone(),
        path: o.path.clone(),
        sub_path: o.sub_path.clone(),
        why: match o.choice {
            OutputsChoice::Asked => "asked for",
            OutputsChoice::DefaultOutputs => "defaultOutputs",
            OutputsChoice::FirstAvailable => "first available by name",
        }
        .to_owned(),
        sub_path_rule: o.rule.clone(),
        today: o.derived.clone(),
    });
    // The config's other stores: only once the selection was resolved.
    let selected = !trace.targeted.is_empty() || !trace.data.is_empty() || trace.outputs.is_some();
    let (left_out, left_out_more) = if selected {
        left_out(config, namespace, &trace)
    } else {
        (Vec::new(), 0)
    };
    let kept: BTreeMap<&str, &crate::patch::Kept> = trace
        .kept
        .iter()
        .map(|k| (k.container.as_str(), k))
        .collect();
    let containers = trace
        .targeted
        .iter()
        .map(|(name, targeted)| {
            let k = kept.get(name.as_str());
            ContainerAccount {
                name: name.clone(),
                targeted: *targeted,
                mounts: if *targeted {
                    trace.mounts.clone()
                } else {
                    Vec::new()
                },
                // What it receives: the webhook's variables but those it
                // keeps of its own.
                env: if *targeted {
                    trace
                        .env
                        .iter()
                        .filter(|e| k.is_none_or(|k| !k.left_out.contains(e)))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                },
                keeps_own: k.map(|k| k.own.clone()).unwrap_or_default(),
                left_out: k.map(|k| k.left_out.clone()).unwrap_or_default(),
            }
        })
        .collect();
    Ok(Account {
        pod: format!("{namespace}/{}", subject.name),
        outcome: reviewed.decision.outcome(),
        reason,
        field,
        message,
        data,
        outputs,
        left_out,
        left_out_more,
        containers,
        warnings: reviewed.notes.warnings.clone(),
        audit_annotations: reviewed
            .notes
            .audit
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    })
}

/// Every store of the config the pod does not get, with why: not granted
/// to its namespace, or granted but not asked for (at most 20 per role).
fn left_out(config: &Config, namespace: &str, trace: &Trace) -> (Vec<LeftOut>, usize) {
    let mut out = Vec::new();
    let mut more = 0;
    for role in [Role::Data, Role::Outputs] {
        let mut listed = 0;
        for (name, store) in config.stores(role) {
            let got = match role {
                Role::Data => trace.data.iter().any(|(n, _)| n == name),
                Role::Outputs => trace.outputs.as_ref().is_some_and(|o| &o.store == name),
            };
            if got {
                continue;
            }
            if listed == LEFT_OUT_LISTED {
                more += 1;
                continue;
            }
            listed += 1;
            let why = if !store.available_in(namespace) {
                format!("not granted to namespace {namespace}")
            } else if role == Role::Outputs && trace.outputs.is_some() {
                "a run gets one outputs store".to_owned()
            } else {
                "not asked for".to_owned()
            };
            out.push(LeftOut {
                store: name.clone(),
                role,
                why,
            });
        }
    }
    (out, more)
}

/// The account in plain words.
pub fn text(a: &Account) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = write!(s, "pod {}: {}", a.pod, a.outcome.as_str());
    if let Some(reason) = &a.reason {
        let _ = write!(s, " ({reason})");
    }
    s.push('\n');
    if let Some(message) = &a.message {
        let _ = writeln!(s, "  {message}");
        if let Some(field) = &a.field {
            let _ = writeln!(s, "  field: {field}");
        }
    }
    if !a.data.is_empty() || a.outputs.is_some() {
        let _ = writeln!(s, "\nstores:");
    }
    for d in &a.data {
        let _ = writeln!(s, "  data {} at {} ({})", d.store, d.path, d.why);
    }
    if let Some(o) = &a.outputs {
        let _ = writeln!(s, "  outputs {} at {} ({})", o.store, o.path, o.why);
        let _ = writeln!(s, "    sub-path {} from {}", o.sub_path, o.sub_path_rule);
        if let Some(today) = &o.today {
            let _ = writeln!(s, "    (today's rules would give {today})");
        }
    }
    if !a.left_out.is_empty() {
        let _ = writeln!(s, "\nleft out:");
        for l in &a.left_out {
            let _ = writeln!(s, "  {} {}: {}", l.role, l.store, l.why);
        }
        if a.left_out_more > 0 {
            let _ = writeln!(s, "  and {} more", a.left_out_more);
        }
    }
    if !a.containers.is_empty()
        && (a.outcome == Outcome::Patched || a.reason.as_deref() == Some("already-injected"))
    {
        let _ = writeln!(s, "\ncontainers:");
        for c in &a.containers {
            if !c.targeted {
                let _ = writeln!(s, "  {}: no stores (not named in containers:)", c.name);
                continue;
            }
            let _ = writeln!(s, "  {}:", c.name);
            for m in &c.mounts {
                let _ = writeln!(s, "    mount {m}");
            }
            if !c.env.is_empty() {
                let _ = writeln!(s, "    env {}", c.env.join(", "));
            }
            if !c.keeps_own.is_empty() {
                let _ = writeln!(
                    s,
                    "    keeps its own {}; does not get {}",
                    c.keeps_own.join(", "),
                    c.left_out.join(", ")
                );
            }
        }
    }
    if !a.warnings.is_empty() {
        let _ = writeln!(s, "\nwarnings:");
        for w in &a.warnings {
            let _ = writeln!(s, "  {w}");
        }
    }
    s
}

/// An outcome by its stable name, as logs and metrics label it.
fn outcome_name<S: Serializer>(outcome: &Outcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(outcome.as_str())
}

/// A role by its section's key (`data`, `outputs`).
fn role_name<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}
