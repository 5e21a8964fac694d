//! The verdict on a live pod, pure: why it has, or has not, the webhook's
//! stores, in the order the API server decides, from the objects read and
//! the account of re-reviewing it with today's config; for a mutated pod,
//! what it got and where today's config differs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde::Serialize;
use serde_json::Value;

use super::route::{labels_of, route, Path, PolicyInstalled};
use crate::cluster::registration::match_conditions::{evaluate, excluding, unevaluated, Bindings};
use crate::cluster::registration::selector::selects;
use crate::cluster::registration::{entry, sends_pod_create};
use crate::offline::account::Account;
use crate::review::Outcome as Decided;
use crate::vocabulary::{
    ANNOTATION_INJECTED, LABEL_INJECTION, OPT_IN, OPT_OUT, RESERVED_ENV, VOLUME_PREFIX,
    WEBHOOK_ENTRY,
};

/// Why a live pod has, or has not, the webhook's stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It was mutated, and today's config gives the same.
    Mutated,
    /// It was mutated, and today's config would give something else.
    MutatedDiffers,
    /// Its namespace is not selected by the configuration's
    /// `namespaceSelector`: the API server never called the webhook.
    NamespaceNotSelected,
    /// It carries the opt-out label.
    OptedOut,
    /// It was created before the webhook configuration was.
    CreatedBeforeRegistration,
    /// There is no MutatingWebhookConfiguration of that name (or it has no
    /// webhook entry).
    NoConfiguration,
    /// The configuration's rules or `objectSelector` do not send it.
    ExcludedByConfiguration,
    /// One of the entry's `matchConditions` is false for it (named in
    /// [`Live::match_condition`]).
    ExcludedByMatchCondition,
    /// The webhook was called (as far as the configuration says) and the
    /// pod still has nothing.
    NotMutated,
}

impl Verdict {
    /// The stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Mutated => "mutated",
            Verdict::MutatedDiffers => "mutated-differs",
            Verdict::NamespaceNotSelected => "namespace-not-selected",
            Verdict::OptedOut => "opted-out",
            Verdict::CreatedBeforeRegistration => "created-before-registration",
            Verdict::NoConfiguration => "no-configuration",
            Verdict::ExcludedByConfiguration => "excluded-by-configuration",
            Verdict::ExcludedByMatchCondition => "excluded-by-match-condition",
            Verdict::NotMutated => "not-mutated",
        }
    }
}

/// What the live pod says, besides the account of re-reviewing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Live {
    /// `namespace/name`.
    pub pod: String,
    /// Whether it carries the `persistence-injected` annotation.
    pub mutated: bool,
    /// The verdict's stable name.
    pub verdict: Verdict,
    /// The verdict in plain words.
    pub why: String,
    /// What the annotation records (a mutated pod).
    pub got: Option<Got>,
    /// Per container and init container: the webhook's env vars and mounts
    /// it has (a mutated pod).
    pub containers: Vec<Received>,
    /// Where the annotation and today's config differ (a mutated pod).
    pub differences: Vec<Difference>,
    /// The MutatingWebhookConfiguration looked at, when it exists.
    pub webhook_configuration: Option<String>,
    /// The `matchCondition` that kept the pod from the webhook.
    pub match_condition: Option<String>,
    /// Which path it took or would take: the webhook, the policies, both
    /// or neither, and what decided.
    pub path: Path,
}

/// The `persistence-injected` annotation of a mutated pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Got {
    /// The data stores.
    pub data: Vec<String>,
    /// The outputs store.
    pub outputs: Option<String>,
    /// The outputs path.
    pub outputs_path: Option<String>,
}

/// The webhook's env vars and mounts one container of the live pod has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Received {
    /// The container's name.
    pub name: String,
    /// Whether it is an init container.
    pub init: bool,
    /// The webhook's env vars it has (names only, never a value).
    pub env: Vec<String>,
    /// SDK variables it sets itself and kept (re-review of today's config).
    pub keeps_own: Vec<String>,
    /// Its mounts of the webhook's volumes: `path (volume V[, subPath S][, read-only])`.
    pub mounts: Vec<String>,
}

/// One field where the annotation and today's config differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The field of the annotation.
    pub field: Field,
    /// What the annotation records.
    pub had: String,
    /// What today's config gives (`none` for nothing).
    pub today: String,
}

/// A field of the `persistence-injected` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Field {
    /// The data stores.
    Data,
    /// The outputs store.
    Outputs,
    /// The outputs path.
    OutputsPath,
}

impl Field {
    /// Its key in the annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Data => "data",
            Field::Outputs => "outputs",
            Field::OutputsPath => "outputsPath",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The live objects [`judge`] decides from.
#[derive(Debug, Clone)]
pub struct Objects<'a> {
    /// The pod, as the API server returns it.
    pub pod: &'a Value,
    /// Its namespace's labels.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// The MutatingWebhookConfiguration, `None` when it does not exist.
    pub configuration: Option<&'a MutatingWebhookConfiguration>,
    /// For a mutated pod: whether re-reviewing it without the webhook's
    /// additions ([`super::additions`]) gives exactly the additions it has.
    pub same_today: Option<bool>,
    /// The MutatingAdmissionPolicy of ours, when one is installed (`Err`:
    /// why it could not be read).
    pub policy: Result<Option<PolicyInstalled>, String>,
}

/// A Kubernetes timestamp (`2006-01-02T15:04:05Z`) as comparable text;
/// `None` for any other form.
fn timestamp(v: &Value) -> Option<&str> {
    let s = v.as_str()?;
    let b = s.as_bytes();
    (s.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z').then_some(s)
}

/// The verdict on a live pod, from the objects read and the account of
/// re-reviewing it with today's config. Pure.
pub fn judge(objects: &Objects<'_>, webhook_name: &str, today: &Account) -> Live {
    let pod = objects.pod;
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let annotations = labels_of(pod, "annotations");
    let pod_labels = labels_of(pod, "labels");
    let recorded = annotations.get(ANNOTATION_INJECTED);
    let hook = objects.configuration.and_then(entry);
    let mut live = Live {
        pod: format!("{namespace}/{name}"),
        mutated: recorded.is_some(),
        verdict: Verdict::NotMutated,
        why: String::new(),
        got: None,
        containers: Vec::new(),
        differences: Vec::new(),
        webhook_configuration: objects.configuration.and_then(|c| c.metadata.name.clone()),
        match_condition: None,
        path: Path {
            policies_unread: objects.policy.as_ref().err().cloned(),
            ..route(
                pod,
                objects.namespace_labels,
                objects.configuration,
                objects.policy.as_ref().ok().and_then(Option::as_ref),
                webhook_name,
            )
        },
    };
    if let Some(recorded) = recorded {
        let got = parse_got(recorded);
        live.containers = received(pod, today);
        live.differences = differences(&got, today);
        let same = objects.same_today == Some(true) && live.differences.is_empty();
        live.got = Some(got);
        if same {
            live.verdict = Verdict::Mutated;
            live.why = "the webhook mutated it, and today's config gives the same".to_owned();
        } else {
            live.verdict = Verdict::MutatedDiffers;
            live.why = match today.outcome {
                Decided::Patched if !live.differences.is_empty() => {
                    let said: Vec<String> = live
                        .differences
                        .iter()
                        .map(|d| format!("{} {} instead of {}", d.field, d.today, d.had))
                        .collect();
                    format!(
                        "the webhook mutated it under another config: today's config would give {} (a re-created pod gets today's; see the account below)",
                        said.join(", ")
                    )
                }
                Decided::Patched => "the webhook mutated it under another config: today's config selects the same stores, but what they add differs (mount paths, variables or credentials; a re-created pod gets today's, see the account below)".to_owned(),
                Decided::Denied => format!(
                    "the webhook mutated it; re-reviewed without what the webhook added, today's config would refuse it ({}): a re-created pod would be refused (see the account below)",
                    today.reason.as_deref().unwrap_or("denied")
                ),
                _ => "the webhook mutated it; today's config selects something else (see the differences)".to_owned(),
            };
        }
        return live;
    }
    let hook_name = hook.map_or(WEBHOOK_ENTRY, |h| h.name.as_str());
    // 1. The namespace: the configuration's selector, or the manifests'
    //    opt-in label when there is no configuration.
    let namespace_selected = match hook {
        Some(h) => selects(h.namespace_selector.as_ref(), objects.namespace_labels),
        None => {
            objects
                .namespace_labels
                .get(LABEL_INJECTION)
                .map(String::as_str)
                == Some(OPT_IN)
        }
    };
    let pod_opted_out = pod_labels.get(LABEL_INJECTION).map(String::as_str) == Some(OPT_OUT);
    let created = timestamp(&pod["metadata"]["creationTimestamp"]);
    let registered = objects
        .configuration
        .and_then(|c| serde_json::to_value(&c.metadata.creation_timestamp).ok());
    let registered = registered.as_ref().and_then(timestamp);
    let before = match (created, registered) {
        (Some(c), Some(r)) if c < r => Some((c, r)),
        _ => None,
    };
    // The API server evaluates them last, on the request it would send.
    let conditions = hook
        .and_then(|h| h.match_conditions.as_deref())
        .map(|c| evaluate(c, &Bindings::pod_create(pod, namespace, false)))
        .unwrap_or_default();
    (live.verdict, live.why) = if !namespace_selected {
        (
            Verdict::NamespaceNotSelected,
            format!(
                "its namespace {namespace} is not selected by the namespaceSelector of {} (it lacks the label {LABEL_INJECTION}={OPT_IN}), so the API server never called the webhook: kubectl label namespace {namespace} {LABEL_INJECTION}={OPT_IN}, then re-create the pod",
                objects.configuration.map_or_else(|| "the webhook configuration".to_owned(), |_| format!("MutatingWebhookConfiguration {webhook_name}")),
            ),
        )
    } else if pod_opted_out {
        (
            Verdict::OptedOut,
            format!("it carries the opt-out label {LABEL_INJECTION}={OPT_OUT}, so it gets nothing"),
        )
    } else if hook.is_none() {
        (
            Verdict::NoConfiguration,
            match objects.configuration {
                None => format!("there is no MutatingWebhookConfiguration {webhook_name}: the API server calls no webhook (install it, or name yours with --webhook-name)"),
                Some(_) => format!("MutatingWebhookConfiguration {webhook_name} has no webhook entry {WEBHOOK_ENTRY}: the API server never calls ours"),
            },
        )
    } else if let Some((created, registered)) = before {
        (
            Verdict::CreatedBeforeRegistration,
            format!("it was created at {created}, before MutatingWebhookConfiguration {webhook_name} was registered at {registered}: re-create it to get its stores"),
        )
    } else if let Some(h) = hook.filter(|h| !sends_pod_create(h)) {
        (
            Verdict::ExcludedByConfiguration,
            format!(
                "the rules of webhook {} do not send pod CREATEs: the API server never called it",
                h.name
            ),
        )
    } else if hook.is_some_and(|h| !selects(h.object_selector.as_ref(), &pod_labels)) {
        (
            Verdict::ExcludedByConfiguration,
            format!("the objectSelector of webhook {hook_name} does not select the pod's labels: the API server never called it"),
        )
    } else if let Some(c) = excluding(&conditions) {
        live.match_condition = Some(c.name.clone());
        (
            Verdict::ExcludedByMatchCondition,
            format!(
                "matchCondition {} of webhook {hook_name} ({}) is false for it, so the API server never called the webhook (evaluated on the stored pod in namespace {namespace})",
                c.name, c.expression
            ),
        )
    } else {
        let unknown = unevaluated(&conditions);
        let unknown = if unknown.is_empty() {
            String::new()
        } else {
            format!(
                ", matchCondition {} (not evaluated offline) was false for it",
                unknown.join(", ")
            )
        };
        (
            Verdict::NotMutated,
            format!(
                "the configuration sends it to the webhook, yet it has no {ANNOTATION_INJECTED} annotation: the webhook was called but another webhook or the API server's admission changed or replaced the result{unknown}, the webhook was unreachable under failurePolicy Ignore, or it was created within seconds of the registration; {}",
                match today.outcome {
                    Decided::Denied => "today the webhook would refuse it (below)",
                    Decided::Patched => "today the webhook would mutate it (below)",
                    _ => "today the webhook would leave it as it is (below)",
                }
            ),
        )
    };
    live
}

/// The annotation's `{data, outputs, outputsPath}` (an unreadable one
/// gives nothing: the differences then show it).
fn parse_got(recorded: &str) -> Got {
    let v: Value = serde_json::from_str(recorded).unwrap_or(Value::Null);
    Got {
        data: v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        outputs: v["outputs"].as_str().map(str::to_owned),
        outputs_path: v["outputsPath"].as_str().map(str::to_owned),
    }
}

/// Where the annotation and today's selection differ.
fn differences(got: &Got, today: &Account) -> Vec<Difference> {
    let mut out = Vec::new();
    if today.data.is_empty() && today.outputs.is_none() && today.outcome != Decided::Patched {
        // Nothing was selected today (a refusal of the selection itself, a
        // skip): the account says why.
        return out;
    }
    let had: BTreeSet<&str> = got.data.iter().map(String::as_str).collect();
    let now: BTreeSet<&str> = today.data.iter().map(|d| d.store.as_str()).collect();
    let list = |s: &BTreeSet<&str>| {
        if s.is_empty() {
            "none".to_owned()
        } else {
            s.iter().copied().collect::<Vec<_>>().join(", ")
        }
    };
    if had != now {
        out.push(Difference {
            field: Field::Data,
            had: list(&had),
            today: list(&now),
        });
    }
    let none = || "none".to_owned();
    let outputs_now = today.outputs.as_ref().map(|o| o.store.clone());
    if got.outputs != outputs_now {
        out.push(Difference {
            field: Field::Outputs,
            had: got.outputs.clone().unwrap_or_else(none),
            today: outputs_now.unwrap_or_else(none),
        });
    }
    let path_now = today.outputs.as_ref().map(|o| o.path.clone());
    if got.outputs_path != path_now {
        out.push(Difference {
            field: Field::OutputsPath,
            had: got.outputs_path.clone().unwrap_or_else(none),
            today: path_now.unwrap_or_else(none),
        });
    }
    out
}

/// Per container: the webhook's env vars (the reserved names and those
/// today's config sets) and its mounts of the webhook's volumes (`pw-*`).
fn received(pod: &Value, today: &Account) -> Vec<Received> {
    let ours: BTreeSet<&str> = RESERVED_ENV
        .iter()
        .copied()
        .chain(
            today
                .containers
                .iter()
                .flat_map(|c| c.env.iter().map(String::as_str)),
        )
        .collect();
    let mut out = Vec::new();
    for (list, init) in [("initContainers", true), ("containers", false)] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default();
            let keeps_own: Vec<String> = today
                .containers
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.keeps_own.clone())
                .unwrap_or_default();
            let env = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .filter(|n| ours.contains(n) && !keeps_own.iter().any(|k| k == n))
                .map(str::to_owned)
                .collect();
            let mounts = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| {
                    m["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(VOLUME_PREFIX))
                })
                .map(|m| {
                    let mut d = format!(
                        "{} (volume {}",
                        m["mountPath"].as_str().unwrap_or_default(),
                        m["name"].as_str().unwrap_or_default()
                    );
                    if let Some(sub) = m["subPath"].as_str() {
                        d.push_str(&format!(", subPath {sub}"));
                    }
                    if m["readOnly"].as_bool() == Some(true) {
                        d.push_str(", read-only");
                    }
                    d.push(')');
                    d
                })
                .collect();
            out.push(Received {
                name: name.to_owned(),
                init,
                env,
                keeps_own,
                mounts,
            });
        }
    }
    out
}
