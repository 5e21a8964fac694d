//! One object of a manifest, decided offline as the API server would have
//! the webhook decide it (SPEC §6): a Pod as it is, a workload through the
//! pod its controller creates ([`super::workload`]). The AdmissionReview is
//! built here and answered by the core's `review_with`, the server's code;
//! the patch is then carried back onto the object (for a workload, onto its
//! template). Shared by `mutate` and `test`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::manifests::{self, Position};
use super::workload::{self, Workload};
use crate::bounds::Bounds;
use crate::config::Config;
use crate::review::{review_with, Decision, API_V1};
use crate::vocabulary::ANNOTATION_INJECTED;

/// What a dry run needs besides the object.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'a> {
    /// The persistence config.
    pub config: &'a Config,
    /// The same bounds as `serve`.
    pub bounds: Bounds,
    /// Namespace for an object without one (`--namespace`), which must
    /// otherwise agree with it.
    pub namespace: Option<&'a str>,
    /// The admission uid.
    pub uid: &'a str,
}

/// An object the webhook decides: a Pod or a workload's template.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The object's kind (`Pod`, `Job`, ...).
    pub kind: String,
    /// The namespace its pods are created in.
    pub namespace: String,
    /// Its `metadata.name` (or a Pod's `generateName` followed by `*`).
    pub name: String,
    /// The pointer of the template in the object; `None` for a Pod.
    pub template: Option<&'static str>,
    /// The decision, as the server makes it.
    pub decision: Decision,
    /// The AdmissionReview response the API server would receive.
    pub response: Vec<u8>,
    /// The JSON Patch, carried onto the object (`[]` when not patched).
    pub patch: Value,
    /// The object with the patch applied (as it was when not patched).
    pub object: Value,
    /// The response's `warnings` (SPEC §8), as `kubectl` would print them.
    pub warnings: Vec<String>,
}

impl Decided {
    /// What the pod got, from the annotation the patch records
    /// (`polyaxon.com/persistence-injected`): `None` when it carries none.
    pub fn injected(&self) -> Option<Value> {
        let meta = match self.template {
            Some(t) => self.object.pointer(t)?.get("metadata")?,
            None => self.object.get("metadata")?,
        };
        let text = meta["annotations"][ANNOTATION_INJECTED].as_str()?;
        serde_json::from_str(text).ok()
    }

    /// `Kind namespace/name`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Every Pod and workload of `docs`, decided, with its position. The first
/// input error names its document and stops the run.
pub fn decide_all(setting: &Setting<'_>, docs: &[Value]) -> Result<Vec<(Position, Decided)>> {
    let mut out = Vec::new();
    for (at, object) in manifests::objects(docs) {
        manifests::require_mapping(object).with_context(|| at.to_string())?;
        if !is_decided(object) {
            continue;
        }
        let decided = decide(setting, object).map_err(|e| {
            let kind = object["kind"].as_str().unwrap_or("Pod");
            let name = object["metadata"]["name"].as_str().unwrap_or("(no name)");
            anyhow!("{at} ({kind} {name}): {e:#}")
        })?;
        out.push((at, decided));
    }
    Ok(out)
}

/// Whether the webhook decides this object: a Pod or a workload. Other
/// kinds pass through untouched.
pub fn is_decided(object: &Value) -> bool {
    is_pod(object) || Workload::of(object).is_some()
}

fn is_pod(object: &Value) -> bool {
    object["kind"] == "Pod" && matches!(object["apiVersion"].as_str(), Some("v1") | None)
}

/// Decides `object` (a Pod or a workload). An input error (a template that
/// cannot make a pod, a namespace contradicting `--namespace`, a pod the
/// API server could not have sent) is an `Err` naming the field.
pub fn decide(setting: &Setting<'_>, object: &Value) -> Result<Decided> {
    let kind = object["kind"].as_str().unwrap_or("Pod").to_owned();
    let namespace = namespace_of(object, setting.namespace)?;
    let workload = Workload::of(object);
    let pod = match workload {
        Some(w) => workload::pod_for(w, object, &namespace)?,
        None => {
            let mut pod = object.clone();
            if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("namespace".into(), Value::String(namespace.clone()));
            }
            pod
        }
    };
    let body = review_body(&pod, &namespace, setting.uid);
    let reviewed =
        review_with(setting.config, &setting.bounds, &body).map_err(|e| anyhow!("{e}"))?;
    let patch = match &reviewed.decision {
        Decision::Patched(p) => serde_json::to_value(p)?,
        Decision::Invalid(m) => bail!("{m}"),
        Decision::Unchanged(_) | Decision::Denied(_) => json!([]),
    };
    let template = workload.map(Workload::template_pointer);
    let patch = match template {
        Some(pointer) => onto_template(object, pointer, patch),
        None => patch,
    };
    let mut patched = object.clone();
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())?;
    json_patch::patch(&mut patched, &ops).map_err(|e| {
        anyhow!("applying the patch to the object (a bug: please report it with this input): {e}")
    })?;
    let name = match (
        object["metadata"]["name"].as_str(),
        object["metadata"]["generateName"].as_str(),
    ) {
        (Some(n), _) => n.to_owned(),
        (None, Some(g)) => format!("{g}*"),
        (None, None) => String::new(),
    };
    Ok(Decided {
        kind,
        namespace,
        name,
        template,
        decision: reviewed.decision,
        response: reviewed.response.to_vec(),
        patch,
        object: patched,
        warnings: reviewed.notes.warnings,
    })
}

/// The object's namespace, or `--namespace`, or `default` (as kubectl).
/// Shared by `mutate`, `test` and `explain`.
pub(crate) fn namespace_of(object: &Value, flag: Option<&str>) -> Result<String> {
    let own = object["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty());
    Ok(match (own, flag) {
        (Some(own), Some(flag)) if own != flag => {
            bail!(
                "metadata.namespace {own:?} does not match --namespace {flag:?} (drop --namespace or make them agree)"
            )
        }
        (Some(ns), _) | (None, Some(ns)) => ns.to_owned(),
        (None, None) => "default".to_owned(),
    })
}

/// The AdmissionReview the API server sends for the CREATE of `pod`.
pub fn review_body(pod: &Value, namespace: &str, uid: &str) -> Vec<u8> {
    let mut request = json!({
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": "CREATE",
        "dryRun": true,
        "object": pod,
    });
    if let Some(name) = pod["metadata"].get("name") {
        request["name"] = name.clone();
    }
    let review = json!({"apiVersion": API_V1, "kind": "AdmissionReview", "request": request});
    serde_json::to_vec(&review).expect("a JSON value always serialises")
}

/// The pod's patch carried onto the workload's template at `pointer`: the
/// patch only adds under the pod's `metadata` and `spec`, which the
/// template holds as they were copied into the pod; a template without
/// `metadata` gets an empty one first.
fn onto_template(object: &Value, pointer: &str, patch: Value) -> Value {
    let Value::Array(ops) = patch else {
        return patch;
    };
    let mut out = Vec::with_capacity(ops.len() + 1);
    let touches_metadata = ops.iter().any(|op| {
        op["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/metadata/"))
    });
    let has_metadata = object
        .pointer(pointer)
        .is_some_and(|t| t.get("metadata").is_some_and(Value::is_object));
    if touches_metadata && !has_metadata {
        out.push(json!({"op": "add", "path": format!("{pointer}/metadata"), "value": {}}));
    }
    for mut op in ops {
        if let Some(path) = op["path"].as_str() {
            op["path"] = Value::String(format!("{pointer}{path}"));
        }
        out.push(op);
    }
    Value::Array(out)
}
