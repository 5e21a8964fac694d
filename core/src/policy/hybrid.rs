//! The hybrid install's partition: which pods the webhook admits and which
//! the policies admit, so that every pod in scope takes exactly one path.
//!
//! The webhook's pods are those that carry the selection annotation
//! (`polyaxon.com/persistence`: CEL cannot parse its YAML), and those whose
//! outputs sub-path may need the admission uid (`<generateName><uid>`,
//! which admission policies do not see): no name at admission (a
//! generateName pod), no `polyaxon.com/outputs-subpath` and no
//! `polyaxon.com/unique-name` annotation, no `batch/v1` Job as its one
//! controller. The policies get the complement. Both are written once
//! here, as CEL for the API server ([`webhook_pods`] on the webhook
//! registration, [`policy_pods`] on the policies, by `policy --hybrid`) and
//! as the same rule in Rust ([`route`]) for `explain`.
//!
//! The rule reads the pod alone, never the config, so the registration's
//! condition does not change with the config. It takes a few pods the
//! policies could admit too (an unnamed pod in a namespace without an
//! outputs store, or one whose recorded `outputsPath` the policy would
//! keep): the webhook gives them the same, and the rule stays exact and
//! small. Neither path's mutation changes what it reads (the webhook and
//! the policy add volumes, mounts, env and their own annotations only), so
//! a reinvoked pod takes the same path.

use serde_json::{json, Value};

use super::cel::lit;
use crate::vocabulary::{
    ANNOTATION_OUTPUTS_SUBPATH, ANNOTATION_PERSISTENCE, ANNOTATION_UNIQUE_NAME,
};

/// The pod's name at admission: a generateName pod has none yet (the API
/// server generates it after mutation). The policy's `podName` variable.
pub(super) const POD_NAME: &str =
    "has(object.metadata.name) ? object.metadata.name : has(request.name) ? request.name : ''";

/// The name of the `batch/v1` Job that is the pod's one controller, or `''`.
/// The policy's `job` variable.
pub(super) const JOB_NAME: &str = "has(object.metadata.ownerReferences) ? [object.metadata.ownerReferences.filter(r, has(r.controller) && r.controller)].map(c, c.size() == 1 && has(c[0].apiVersion) && c[0].apiVersion == 'batch/v1' && has(c[0].kind) && c[0].kind == 'Job' && has(c[0].name) ? c[0].name : '')[0] : ''";

/// The name of the webhook registration's condition in a hybrid install.
pub const WEBHOOK_CONDITION: &str = "hybrid-webhook-pods";

/// The name of the policies' condition in a hybrid install.
pub const POLICY_CONDITION: &str = "hybrid-not-webhook-pods";

/// The webhook's pods, as CEL (a webhook `matchCondition`'s expression).
/// Safe without `metadata.annotations`, `metadata.name` and
/// `metadata.ownerReferences`: each is guarded by `has()`.
pub fn webhook_pods() -> String {
    let has = |key: &str| format!("{} in object.metadata.annotations", lit(key));
    format!(
        "(has(object.metadata.annotations) && {selection}) || (({POD_NAME}) == '' && !(has(object.metadata.annotations) && ({subpath} || {unique})) && ({JOB_NAME}) == '')",
        selection = has(ANNOTATION_PERSISTENCE),
        subpath = has(ANNOTATION_OUTPUTS_SUBPATH),
        unique = has(ANNOTATION_UNIQUE_NAME),
    )
}

/// The policies' pods: exactly the complement of [`webhook_pods`].
pub fn policy_pods() -> String {
    format!("!({})", webhook_pods())
}

/// The webhook registration's condition, `{name, expression}`, as the
/// hybrid overlay and the Helm chart add it.
pub fn webhook_condition() -> Value {
    json!({"name": WEBHOOK_CONDITION, "expression": webhook_pods()})
}

/// The policies' condition, `{name, expression}`, as `policy --hybrid`
/// adds it to both policies.
pub fn policy_condition() -> Value {
    json!({"name": POLICY_CONDITION, "expression": policy_pods()})
}

/// Which path a pod takes in a hybrid install, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// It carries the selection annotation.
    Selection,
    /// Its outputs sub-path may need the admission uid: no name at
    /// admission (its generateName, if any), no sub-path annotation, no
    /// Job controller.
    NeedsUid {
        /// Its `metadata.generateName` (empty if none).
        generate_name: String,
    },
    /// The policies: it has a name at admission.
    Named(String),
    /// The policies: it carries a sub-path annotation (which one).
    SubPathAnnotation(&'static str),
    /// The policies: a Job controls it (the Job's name).
    Job(String),
}

impl Route {
    /// Whether the webhook admits it (else the policies).
    pub fn webhook(&self) -> bool {
        matches!(self, Route::Selection | Route::NeedsUid { .. })
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Selection => write!(f, "it carries {ANNOTATION_PERSISTENCE}"),
            Route::NeedsUid { generate_name } => write!(
                f,
                "it has no name at admission (generateName {generate_name:?}), no {ANNOTATION_OUTPUTS_SUBPATH} or {ANNOTATION_UNIQUE_NAME} annotation and no Job as its controller: its outputs sub-path may need the admission uid"
            ),
            Route::Named(name) => write!(f, "it has a name at admission ({name:?})"),
            Route::SubPathAnnotation(key) => write!(f, "it carries {key}"),
            Route::Job(job) => write!(f, "the Job {job:?} is its controller"),
        }
    }
}

/// [`webhook_pods`] in Rust, for a pod as the API server sends it to
/// admission (`request_name` is the request's name: empty for a
/// generateName pod). The reason is the first term that decides, in the
/// expression's order.
pub fn route(pod: &Value, request_name: &str) -> Route {
    let meta = &pod["metadata"];
    let name = meta
        .get("name")
        .map_or(request_name, |n| n.as_str().unwrap_or_default());
    decide(meta, name)
}

/// The rule on a pod's `metadata`, `name` being its name at admission.
fn decide(meta: &Value, name: &str) -> Route {
    let annotations = meta["annotations"].as_object();
    let annotated = |key: &str| annotations.is_some_and(|a| a.contains_key(key));
    if annotated(ANNOTATION_PERSISTENCE) {
        return Route::Selection;
    }
    if !name.is_empty() {
        return Route::Named(name.to_owned());
    }
    for key in [ANNOTATION_OUTPUTS_SUBPATH, ANNOTATION_UNIQUE_NAME] {
        if annotated(key) {
            return Route::SubPathAnnotation(key);
        }
    }
    if let Some(refs) = meta["ownerReferences"].as_array() {
        let controllers: Vec<&Value> = refs
            .iter()
            .filter(|r| r["controller"].as_bool() == Some(true))
            .collect();
        if let [c] = controllers.as_slice() {
            let job = c["name"].as_str().unwrap_or_default();
            if c["apiVersion"] == "batch/v1" && c["kind"] == "Job" && !job.is_empty() {
                return Route::Job(job.to_owned());
            }
        }
    }
    Route::NeedsUid {
        generate_name: meta["generateName"].as_str().unwrap_or_default().to_owned(),
    }
}

/// [`route`] for a pod read back from the API server: a stored pod with a
/// `generateName` its name starts with had its name generated after
/// admission, so it is routed as it was admitted, without one.
pub fn route_stored(pod: &Value) -> Route {
    let meta = &pod["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let generated = meta["generateName"]
        .as_str()
        .is_some_and(|prefix| !prefix.is_empty() && name.starts_with(prefix));
    decide(meta, if generated { "" } else { name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(meta: Value) -> Value {
        json!({"metadata": meta, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    }

    #[test]
    fn every_pod_takes_one_path_for_one_reason() {
        let job = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "u", "controller": true}]);
        let rs = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]);
        let cases = [
            (
                json!({"name": "p", "annotations": {ANNOTATION_PERSISTENCE: "data: [a]"}}),
                Route::Selection,
            ),
            (
                json!({"generateName": "g-"}),
                Route::NeedsUid {
                    generate_name: "g-".into(),
                },
            ),
            (
                json!({}),
                Route::NeedsUid {
                    generate_name: String::new(),
                },
            ),
            (
                json!({"generateName": "g-", "ownerReferences": rs}),
                Route::NeedsUid {
                    generate_name: "g-".into(),
                },
            ),
            (json!({"name": "p"}), Route::Named("p".into())),
            (
                json!({"generateName": "g-", "annotations": {ANNOTATION_OUTPUTS_SUBPATH: "x"}}),
                Route::SubPathAnnotation(ANNOTATION_OUTPUTS_SUBPATH),
            ),
            (
                json!({"generateName": "g-", "annotations": {ANNOTATION_UNIQUE_NAME: "a.b.1"}}),
                Route::SubPathAnnotation(ANNOTATION_UNIQUE_NAME),
            ),
            (
                json!({"generateName": "train-", "ownerReferences": job}),
                Route::Job("train".into()),
            ),
            // A Job that is not the controller does not count.
            (
                json!({"generateName": "g-", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u"}]}),
                Route::NeedsUid {
                    generate_name: "g-".into(),
                },
            ),
            // The recorded outputsPath is not read: the webhook keeps it as the policy would.
            (
                json!({"generateName": "g-", "annotations": {"polyaxon.com/persistence-injected": "{}"}}),
                Route::NeedsUid {
                    generate_name: "g-".into(),
                },
            ),
        ];
        // The webhook's: the annotated pod and every unnamed pod without a
        // sub-path annotation or a Job controlling it (cases 0 to 3 and 8, 9).
        let webhook = [
            true, true, true, true, false, false, false, false, true, true,
        ];
        assert_eq!(cases.len(), webhook.len());
        for ((meta, want), webhook) in cases.into_iter().zip(webhook) {
            let got = route(&pod(meta.clone()), "");
            assert_eq!(got, want, "{meta}");
            assert_eq!(got.webhook(), webhook, "{meta}");
        }
        // The request's name counts when the object has none.
        assert_eq!(
            route(&pod(json!({})), "named"),
            Route::Named("named".into())
        );
    }

    #[test]
    fn a_stored_pod_is_routed_as_it_was_admitted() {
        let stored = pod(json!({"name": "g-abcde", "generateName": "g-"}));
        assert_eq!(
            route_stored(&stored),
            Route::NeedsUid {
                generate_name: "g-".into()
            }
        );
        let named = pod(json!({"name": "other", "generateName": "g-"}));
        assert_eq!(route_stored(&named), Route::Named("other".into()));
    }

    /// The policies' condition is the webhook's negated, both read the
    /// policy's own name and Job expressions, and the annotations are
    /// guarded: an expression the API server accepts (a `matchCondition`
    /// must be safe without optional fields).
    #[test]
    fn the_conditions_are_one_rule_and_its_complement() {
        let webhook = webhook_pods();
        assert_eq!(policy_pods(), format!("!({webhook})"));
        assert!(
            webhook.contains(POD_NAME) && webhook.contains(JOB_NAME),
            "{webhook}"
        );
        assert_eq!(
            webhook.matches("object.metadata.annotations").count(),
            5,
            "each read of the annotations beside its has(): {webhook}"
        );
        assert_eq!(webhook_condition()["name"], WEBHOOK_CONDITION);
        assert_eq!(policy_condition()["expression"], policy_pods());
    }
}
