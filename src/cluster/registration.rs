//! What a MutatingWebhookConfiguration says about a request, as the API
//! server reads it: which entry is ours, whether its rules send a pod
//! CREATE, whether its `namespaceSelector` and `objectSelector` select
//! ([`selector`]), and which of its `matchConditions` hold ([`match_conditions`]).
//! `check` judges the registration with it and live `explain` tells why a
//! pod was not sent. Pure.

use super::check::objects::{MutatingWebhook, MutatingWebhookConfiguration};
use crate::vocabulary::WEBHOOK_ENTRY;

pub mod match_conditions;
pub mod selector;

/// Our entry of a webhook configuration: the one named
/// `persistence.polyaxon.com`, or the only one there is.
pub fn entry(config: &MutatingWebhookConfiguration) -> Option<&MutatingWebhook> {
    let entries = config.webhooks.as_deref().unwrap_or_default();
    entries
        .iter()
        .find(|w| w.name == WEBHOOK_ENTRY)
        .or(match entries {
            [only] => Some(only),
            _ => None,
        })
}

fn covers(list: Option<&Vec<String>>, want: &str) -> bool {
    list.is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
}

/// Whether the entry's rules send a CREATE of a v1 pod (namespaced); `*`
/// matches any value.
pub fn sends_pod_create(hook: &MutatingWebhook) -> bool {
    hook.rules.iter().flatten().any(|r| {
        covers(r.operations.as_ref(), "CREATE")
            && covers(r.api_groups.as_ref(), "")
            && covers(r.api_versions.as_ref(), "v1")
            && covers(r.resources.as_ref(), "pods")
            && r.scope.as_deref().is_none_or(|s| s != "Cluster")
    })
}
