//! A live pod re-reviewed with today's config, pure: the account of what
//! the webhook would do with it now and, for a mutated pod, whether today
//! gives exactly what it has.

use anyhow::Result;
use serde_json::Value;

use super::additions;
use super::route::labels_of;
use crate::config::Config;
use crate::offline::account::{account, Account};
use crate::vocabulary::ANNOTATION_INJECTED;

/// The account of re-reviewing the live `pod` with today's config and, for
/// a mutated pod, whether today gives exactly what it has. A mutated pod
/// is re-reviewed without what the webhook added ([`additions`]), as if
/// created today: the values an older config wrote would otherwise
/// conflict with today's (`env-conflict`) instead of being compared.
pub fn rereview(
    config: &Config,
    bounds: &crate::Bounds,
    pod: &Value,
    namespace: &str,
    uid: &str,
) -> Result<(Account, Option<bool>)> {
    let mutated = labels_of(pod, "annotations").contains_key(ANNOTATION_INJECTED);
    let reviewed = if mutated {
        additions::without_ours(pod)
    } else {
        pod.clone()
    };
    let body = crate::offline::dry_run::review_body(&reviewed, namespace, uid);
    let today = account(config, bounds, &body)?;
    let same = mutated.then(|| same_as_today(config, bounds, &body, &reviewed, pod));
    Ok((today, same))
}

/// Whether today's patch of the pod without our additions (`bare`, whose
/// review `body` is) gives exactly the additions the stored pod has.
fn same_as_today(
    config: &Config,
    bounds: &crate::Bounds,
    body: &[u8],
    bare: &Value,
    stored: &Value,
) -> bool {
    let Ok(reviewed) = crate::review::review_with(config, bounds, body) else {
        return false;
    };
    let crate::review::Decision::Patched(patch) = &reviewed.decision else {
        return false;
    };
    let mut predicted = bare.clone();
    if json_patch::patch(&mut predicted, patch.patch()).is_err() {
        return false;
    }
    additions::same(&additions::ours(stored), &additions::ours(&predicted))
}
