//! The pods a workload's controller creates, as the API server would send
//! them to the webhook (SPEC §6, `mutate` in CI): which kinds carry a pod
//! template and where, the name the controller gives its pods, and the
//! controller ownerReference it sets. It owns no decision: the pod it builds
//! goes through the core's `review_with` like any other.
//!
//! What only the controller knows at run time is written as `x`s of the
//! same length, so the sub-path is deterministic and visibly a placeholder:
//! a Deployment's pod-template-hash (`web-xxxxxxxxxx-`) and a CronJob's
//! scheduled time (Job `nightly-xxxxxxxx`, 8 digits of minutes since the
//! epoch), and the 5 characters the API server adds to a workload's own
//! `generateName` (`train-xxxxx`). A StatefulSet's pods are decided as its
//! first one, `<name>-0`.

use serde_json::{json, Map, Value};

/// Stands for a Deployment's pod-template-hash (10 characters).
pub const TEMPLATE_HASH: &str = "xxxxxxxxxx";
/// Stands for a CronJob's scheduled time, in minutes since the epoch.
pub const SCHEDULED_TIME: &str = "xxxxxxxx";
/// Stands for the 5 characters the API server adds to a `generateName`.
pub const NAME_SUFFIX: &str = "xxxxx";
/// The uid of the owner in the ownerReference, when the object has none.
const OWNER_UID: &str = "00000000-0000-0000-0000-000000000001";

/// A kind whose controller creates pods from a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `batch/v1` Job: pods `<job>-`, controlled by the Job.
    Job,
    /// `batch/v1` CronJob: a Job `<cronjob>-<scheduled time>`, whose pods it controls.
    CronJob,
    /// `apps/v1` Deployment: a ReplicaSet `<deployment>-<hash>`, whose pods it controls.
    Deployment,
    /// `apps/v1` StatefulSet: pods named `<sts>-<ordinal>`.
    StatefulSet,
    /// `apps/v1` DaemonSet: pods `<ds>-`.
    DaemonSet,
    /// `apps/v1` ReplicaSet: pods `<rs>-`.
    ReplicaSet,
}

impl Workload {
    /// The workload kind of an object, from its `apiVersion` and `kind`;
    /// `None` for a Pod and for every other kind (including a kind of the
    /// same name in another API group).
    pub fn of(object: &Value) -> Option<Workload> {
        let group = object["apiVersion"]
            .as_str()
            .and_then(|v| v.split_once('/'))
            .map(|(group, _)| group);
        match (group, object["kind"].as_str()?) {
            (Some("batch"), "Job") => Some(Workload::Job),
            (Some("batch"), "CronJob") => Some(Workload::CronJob),
            (Some("apps"), "Deployment") => Some(Workload::Deployment),
            (Some("apps"), "StatefulSet") => Some(Workload::StatefulSet),
            (Some("apps"), "DaemonSet") => Some(Workload::DaemonSet),
            (Some("apps"), "ReplicaSet") => Some(Workload::ReplicaSet),
            _ => None,
        }
    }

    /// The JSON pointer of the pod template in the object.
    pub fn template_pointer(self) -> &'static str {
        match self {
            Workload::CronJob => "/spec/jobTemplate/spec/template",
            _ => "/spec/template",
        }
    }

    /// The template's field path, for messages (`spec.template`).
    pub fn template_field(self) -> String {
        self.template_pointer()[1..].replace('/', ".")
    }

    /// The pod's `metadata.name` (StatefulSet) or `generateName` (the
    /// others), and its controller ownerReference, for a workload `name`.
    fn naming(self, name: &str, uid: &str) -> (Naming, Value) {
        let owner = |api: &str, kind: &str, owner: &str| {
            json!({"apiVersion": api, "kind": kind, "name": owner, "uid": uid,
                "controller": true, "blockOwnerDeletion": true})
        };
        match self {
            Workload::Job => (
                Naming::Generate(format!("{name}-")),
                owner("batch/v1", "Job", name),
            ),
            Workload::CronJob => {
                let job = format!("{name}-{SCHEDULED_TIME}");
                (
                    Naming::Generate(format!("{job}-")),
                    owner("batch/v1", "Job", &job),
                )
            }
            Workload::Deployment => {
                let rs = format!("{name}-{TEMPLATE_HASH}");
                (
                    Naming::Generate(format!("{rs}-")),
                    owner("apps/v1", "ReplicaSet", &rs),
                )
            }
            Workload::StatefulSet => (
                Naming::Name(format!("{name}-0")),
                owner("apps/v1", "StatefulSet", name),
            ),
            Workload::DaemonSet => (
                Naming::Generate(format!("{name}-")),
                owner("apps/v1", "DaemonSet", name),
            ),
            Workload::ReplicaSet => (
                Naming::Generate(format!("{name}-")),
                owner("apps/v1", "ReplicaSet", name),
            ),
        }
    }
}

enum Naming {
    Name(String),
    Generate(String),
}

/// Why a workload's template cannot make a pod; the message completes
/// "`<kind> <namespace>/<name>`: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No template (or not a mapping) where the kind keeps it.
    #[error("{0} is missing or not a mapping")]
    Missing(String),
    /// `metadata` or `spec` of the template is not a mapping.
    #[error("{0} must be a mapping")]
    NotAMapping(String),
    /// The workload has neither `metadata.name` nor `metadata.generateName`.
    #[error(
        "metadata.name is missing (and no generateName): the controller names its pods after it"
    )]
    NoName,
}

/// The pod `workload`'s controller creates in `namespace` from `object`'s
/// template: the template's metadata and spec, the name or `generateName`
/// the controller gives, and its controller ownerReference.
pub fn pod_for(
    workload: Workload,
    object: &Value,
    namespace: &str,
) -> Result<Value, TemplateError> {
    let field = workload.template_field();
    let template = object
        .pointer(workload.template_pointer())
        .and_then(Value::as_object)
        .ok_or_else(|| TemplateError::Missing(field.clone()))?;
    let meta = &object["metadata"];
    let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
        (Some(n), _) if !n.is_empty() => n.to_owned(),
        // The API server completes it with 5 random characters.
        (_, Some(g)) if !g.is_empty() => format!("{g}{NAME_SUFFIX}"),
        _ => return Err(TemplateError::NoName),
    };
    let name = name.as_str();
    let uid = meta["uid"].as_str().unwrap_or(OWNER_UID);
    let mut metadata = match template.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(TemplateError::NotAMapping(format!("{field}.metadata"))),
    };
    let spec = match template.get("spec") {
        Some(Value::Object(s)) => Value::Object(s.clone()),
        None | Some(Value::Null) => return Err(TemplateError::Missing(format!("{field}.spec"))),
        Some(_) => return Err(TemplateError::NotAMapping(format!("{field}.spec"))),
    };
    let (naming, owner) = workload.naming(name, uid);
    metadata.remove("name");
    metadata.remove("generateName");
    match naming {
        Naming::Name(n) => metadata.insert("name".into(), Value::String(n)),
        Naming::Generate(g) => metadata.insert("generateName".into(), Value::String(g)),
    };
    metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
    metadata.insert("ownerReferences".into(), json!([owner]));
    Ok(json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(api: &str, kind: &str) -> Value {
        let template = json!({"metadata": {"name": "ignored", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
        let spec = if kind == "CronJob" {
            json!({"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}})
        } else {
            json!({"template": template})
        };
        json!({"apiVersion": api, "kind": kind, "metadata": {"name": "w"}, "spec": spec})
    }

    #[test]
    fn each_kind_names_and_owns_its_pods_as_its_controller_does() {
        let cases = [
            ("batch/v1", "Job", None, Some("w-"), ("Job", "w")),
            (
                "batch/v1",
                "CronJob",
                None,
                Some("w-xxxxxxxx-"),
                ("Job", "w-xxxxxxxx"),
            ),
            (
                "apps/v1",
                "Deployment",
                None,
                Some("w-xxxxxxxxxx-"),
                ("ReplicaSet", "w-xxxxxxxxxx"),
            ),
            (
                "apps/v1",
                "StatefulSet",
                Some("w-0"),
                None,
                ("StatefulSet", "w"),
            ),
            ("apps/v1", "DaemonSet", None, Some("w-"), ("DaemonSet", "w")),
            (
                "apps/v1",
                "ReplicaSet",
                None,
                Some("w-"),
                ("ReplicaSet", "w"),
            ),
        ];
        for (api, kind, name, generate, (owner_kind, owner)) in cases {
            let obj = object(api, kind);
            let w = Workload::of(&obj).unwrap_or_else(|| panic!("{kind} is a workload"));
            let pod = pod_for(w, &obj, "team-a").expect(kind);
            let meta = &pod["metadata"];
            assert_eq!(meta["name"].as_str(), name, "{kind}");
            assert_eq!(meta["generateName"].as_str(), generate, "{kind}");
            assert_eq!(meta["namespace"], "team-a", "{kind}");
            assert_eq!(meta["labels"]["app"], "x", "{kind}: template labels kept");
            let r = &meta["ownerReferences"][0];
            assert_eq!(
                (r["kind"].as_str(), r["name"].as_str(), &r["controller"]),
                (Some(owner_kind), Some(owner), &json!(true)),
                "{kind}"
            );
            assert_eq!(pod["spec"]["containers"][0]["name"], "main", "{kind}");
        }
    }

    #[test]
    fn other_kinds_and_groups_are_not_workloads() {
        for (api, kind) in [
            ("v1", "Pod"),
            ("v1", "ConfigMap"),
            ("example.com/v1", "Job"),
            ("v1", "Job"),
            ("apps/v1", "ControllerRevision"),
        ] {
            assert_eq!(Workload::of(&object(api, kind)), None, "{api} {kind}");
        }
    }

    #[test]
    fn a_template_that_cannot_make_a_pod_says_what_is_missing() {
        let no_template =
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {}});
        let err = pod_for(Workload::Job, &no_template, "ns").expect_err("no template");
        assert_eq!(err.to_string(), "spec.template is missing or not a mapping");
        let mut cron = object("batch/v1", "CronJob");
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"] = json!("x");
        let err = pod_for(Workload::CronJob, &cron, "ns").expect_err("spec");
        assert_eq!(
            err.to_string(),
            "spec.jobTemplate.spec.template.spec must be a mapping"
        );
        let mut generated = object("batch/v1", "Job");
        generated["metadata"] = json!({"generateName": "train-"});
        let pod = pod_for(Workload::Job, &generated, "ns").expect("a generateName Job");
        assert_eq!(pod["metadata"]["generateName"], "train-xxxxx-");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "train-xxxxx");
        let mut unnamed = object("apps/v1", "Deployment");
        unnamed["metadata"] = json!({});
        assert_eq!(
            pod_for(Workload::Deployment, &unnamed, "ns"),
            Err(TemplateError::NoName)
        );
    }
}
