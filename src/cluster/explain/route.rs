//! Which path a live pod took, or would take, pure: the webhook, the
//! admission policies, both, or neither, and what decided it (a selector,
//! the registration's or the policies' `matchCondition`). In a hybrid
//! install the core's partition ([`hybrid::route_stored`]) decides between
//! the two; a pod mutated by either carries the same annotation, so the
//! route is what the objects installed now say, not a record.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde::Serialize;
use serde_json::Value;

use crate::cluster::registration::match_conditions::{evaluate, excluding, Bindings};
use crate::cluster::registration::selector::selects;
use crate::cluster::registration::{entry, sends_pod_create};
use crate::vocabulary::{ANNOTATION_PERSISTENCE, LABEL_INJECTION, OPT_IN, OPT_OUT};
use persistence_webhook_core::policy::hybrid;

/// The installed MutatingAdmissionPolicy, as live `explain` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInstalled {
    /// Its name.
    pub name: String,
    /// Whether a MutatingAdmissionPolicyBinding of that name binds it.
    pub bound: bool,
    /// Whether it carries the hybrid condition (`policy --hybrid`).
    pub hybrid: bool,
}

impl PolicyInstalled {
    /// From the policy and its binding (`None`: not found).
    pub fn from_objects(policy: &Value, binding: Option<&Value>) -> PolicyInstalled {
        let name = policy["metadata"]["name"].as_str().unwrap_or_default();
        PolicyInstalled {
            name: name.to_owned(),
            bound: binding.is_some_and(|b| b["spec"]["policyName"] == name),
            hybrid: policy["spec"]["matchConditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == hybrid::POLICY_CONDITION),
        }
    }
}

/// The path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Way {
    /// The webhook admits it.
    Webhook,
    /// The admission policies admit it.
    Policy,
    /// Both (policies beside a webhook that is not narrowed).
    Both,
    /// Neither: it gets nothing of ours.
    Neither,
}

/// Which path, why, and what decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Path {
    /// The path.
    pub route: Way,
    /// In plain words.
    pub why: String,
    /// The selector or `matchCondition` that decided, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why the admission policies could not be read, when they could not:
    /// the path is then worked out as if none were installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies_unread: Option<String>,
}

/// The string-valued `metadata.<key>` map (labels or annotations).
pub(super) fn labels_of(object: &Value, key: &str) -> BTreeMap<String, String> {
    object["metadata"][key]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The path of `pod`, from its namespace's labels, the webhook
/// configuration (`webhook_name`) and our MutatingAdmissionPolicy, as read.
pub fn route(
    pod: &Value,
    namespace_labels: &BTreeMap<String, String>,
    configuration: Option<&MutatingWebhookConfiguration>,
    policy: Option<&PolicyInstalled>,
    webhook_name: &str,
) -> Path {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let pod_labels = labels_of(pod, "labels");
    let hook = configuration.and_then(entry);
    let selected = match hook {
        Some(h) => selects(h.namespace_selector.as_ref(), namespace_labels),
        None => namespace_labels.get(LABEL_INJECTION).map(String::as_str) == Some(OPT_IN),
    };
    let path = |route, why: String, decided_by: Option<&str>| Path {
        route,
        why,
        decided_by: decided_by.map(str::to_owned),
        policies_unread: None,
    };
    if !selected {
        return path(
            Way::Neither,
            format!("its namespace {namespace} is not opted in ({LABEL_INJECTION}={OPT_IN}): neither the webhook nor the policies' binding selects it"),
            Some("namespaceSelector"),
        );
    }
    if pod_labels.get(LABEL_INJECTION).map(String::as_str) == Some(OPT_OUT) {
        return path(
            Way::Neither,
            format!("it carries {LABEL_INJECTION}={OPT_OUT}: neither the webhook nor the policies' binding selects it"),
            Some("objectSelector"),
        );
    }
    let partition = hybrid::route_stored(pod);
    let annotated = matches!(partition, hybrid::Route::Selection);
    // The webhook: its rules and objectSelector, then its conditions
    // other than the hybrid one, which the core's partition reads exactly.
    let narrowed = hook
        .and_then(|h| h.match_conditions.as_deref())
        .is_some_and(|c| c.iter().any(|c| c.name == hybrid::WEBHOOK_CONDITION));
    let webhook_block: Option<String> = match hook {
        None => Some(format!(
            "there is no webhook entry in MutatingWebhookConfiguration {webhook_name}"
        )),
        Some(h) if !sends_pod_create(h) => Some(format!(
            "the rules of webhook {} do not send pod CREATEs",
            h.name
        )),
        Some(h) if !selects(h.object_selector.as_ref(), &pod_labels) => Some(format!(
            "the objectSelector of webhook {} does not select it",
            h.name
        )),
        Some(h) => {
            let others: Vec<_> = h
                .match_conditions
                .iter()
                .flatten()
                .filter(|c| c.name != hybrid::WEBHOOK_CONDITION)
                .cloned()
                .collect();
            let judged = evaluate(&others, &Bindings::pod_create(pod, namespace, false));
            excluding(&judged).map(|c| {
                format!(
                    "matchCondition {} of webhook {} is false for it",
                    c.name, h.name
                )
            })
        }
    };
    let webhook = webhook_block.is_none() && (!narrowed || partition.webhook());
    let installed = policy;
    let policy = policy.filter(|p| p.bound);
    let by_policy = policy.is_some_and(|p| !annotated && (!p.hybrid || !partition.webhook()));
    let policy_name = policy.map_or("", |p| p.name.as_str());
    match (webhook, by_policy) {
        (true, true) => path(
            Way::Both,
            format!("the webhook is not narrowed (no matchCondition {}) and MutatingAdmissionPolicy {policy_name} also takes pods without {ANNOTATION_PERSISTENCE}: both mutate it (the second adds nothing)", hybrid::WEBHOOK_CONDITION),
            None,
        ),
        (true, false) if narrowed => path(
            Way::Webhook,
            format!("{partition}, so it is the webhook's"),
            Some(hybrid::WEBHOOK_CONDITION),
        ),
        (true, false) => path(
            Way::Webhook,
            match installed {
                Some(_) if annotated => format!("{partition}, which only the webhook reads"),
                _ => "the webhook registration sends it to the webhook (no policy of ours takes it)".to_owned(),
            },
            None,
        ),
        (false, true) if policy.is_some_and(|p| p.hybrid) => path(
            Way::Policy,
            format!("{partition}, so it is the policies' (MutatingAdmissionPolicy {policy_name})"),
            Some(hybrid::POLICY_CONDITION),
        ),
        (false, true) => path(
            Way::Policy,
            format!(
                "MutatingAdmissionPolicy {policy_name} takes pods without {ANNOTATION_PERSISTENCE}{}",
                webhook_block.map(|b| format!("; the webhook does not ({b})")).unwrap_or_default()
            ),
            Some("no-selection-annotation"),
        ),
        (false, false) => {
            let why = match (&webhook_block, installed) {
                (Some(block), _) if !narrowed || partition.webhook() => format!("{block}, and no policy of ours takes it"),
                (_, Some(p)) if !p.bound => format!("{partition}, so the webhook leaves it to MutatingAdmissionPolicy {}, which no binding binds", p.name),
                (_, Some(_)) => format!("{partition}, so the webhook leaves it to the policies, which leave it to the webhook (policies made without --hybrid take no annotated pod)"),
                (_, None) => format!("{partition}, so the narrowed webhook leaves it to the policies, but there is no MutatingAdmissionPolicy of ours: install them (persistence-webhook policy --hybrid)"),
            };
            path(Way::Neither, why, narrowed.then_some(hybrid::WEBHOOK_CONDITION))
        }
    }
}
