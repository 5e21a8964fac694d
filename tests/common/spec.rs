//! The SPEC on the test side, written once: the contract's names (SPEC §3-§4,
//! spelled here independently of the implementation's constants) and the
//! invariants every answer must keep (SPEC §5). Used by the golden, property
//! and fuzz-regression tests, and by the fuzz targets
//! (`#[path = "../../tests/common/spec.rs"] mod spec;`), so it depends only
//! on crates the fuzz crate has too: serde_json, base64 and json-patch.
#![allow(dead_code)]

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::Value;

/// SPEC §3: the selection annotation.
pub const ANN_SELECTION: &str = "polyaxon.com/persistence";
/// SPEC §3: the outputs sub-path annotation.
pub const ANN_SUBPATH: &str = "polyaxon.com/outputs-subpath";
/// SPEC §3: Polyaxon's dotted run name.
pub const ANN_UNIQUE_NAME: &str = "polyaxon.com/unique-name";
/// SPEC §4: what the webhook recorded on the pod.
pub const ANN_INJECTED: &str = "polyaxon.com/persistence-injected";
/// The opt-out label.
pub const LABEL_INJECTION: &str = "polyaxon.com/persistence-injection";
/// SPEC §4: `{store name: path}`.
pub const ENV_DATA_PATHS: &str = "POLYAXON_RUN_DATA_PATHS";
/// SPEC §4: the run's outputs path.
pub const ENV_OUTPUTS_PATH: &str = "POLYAXON_RUN_OUTPUTS_PATH";
/// SPEC §4: the cloud stores' access keys.
pub const ENV_ACCESS_KEYS: &str = "POLYSTORES_RUN_STORES_ACCESS_KEYS";
/// SPEC §4: the default GCS credentials file.
pub const ENV_GOOGLE: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The prefix of every volume the webhook adds.
pub const VOLUME_PREFIX: &str = "pw-";
/// Where the GCS key file is mounted.
pub const GCS_CREDENTIALS_DIR: &str = "/var/run/secrets/polyaxon.com/gcs";
/// The AdmissionReview versions the webhook speaks.
pub const API_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Polyaxon 0.x's run name -> outputs directory (SPEC §3).
pub fn unique_name_path(unique: &str) -> Option<String> {
    let parts: Vec<&str> = unique.split('.').collect();
    let kinds = ["jobs", "builds", "notebooks", "tensorboards"];
    Some(match parts.as_slice() {
        [user, project, id] => format!("{user}/{project}/experiments/{id}"),
        [user, project, kind, id] if kinds.contains(kind) => {
            format!("{user}/{project}/{kind}/{id}")
        }
        [user, project, group, id] => format!("{user}/{project}/groups/{group}/{id}"),
        _ => return None,
    })
}

/// SPEC §5: the response is an AdmissionReview echoing the request's uid
/// and apiVersion.
pub fn check_envelope(api_version: &Value, uid: &Value, response: &Value) -> Result<(), String> {
    if response["apiVersion"] != *api_version {
        return Err(format!(
            "response apiVersion {} does not echo the request's {api_version}",
            response["apiVersion"]
        ));
    }
    if response["kind"] != "AdmissionReview" {
        return Err(format!("response kind is {}", response["kind"]));
    }
    if !uid.is_string() || response["response"]["uid"] != *uid {
        return Err(format!(
            "response uid {} does not echo the request's {uid}",
            response["response"]["uid"]
        ));
    }
    Ok(())
}

/// Allowed, with no patch.
pub fn check_unchanged(response: &Value) -> Result<(), String> {
    let inner = &response["response"];
    if inner["allowed"] != true {
        return Err(format!("unchanged but not allowed: {response}"));
    }
    if inner.get("patch").is_some() || inner.get("patchType").is_some() {
        return Err(format!(
            "unchanged but the response has a patch: {response}"
        ));
    }
    Ok(())
}

/// Refused with exactly `message`, with no patch.
pub fn check_refused(response: &Value, message: &str) -> Result<(), String> {
    let inner = &response["response"];
    if inner["allowed"] != false {
        return Err(format!("refused but allowed: {response}"));
    }
    if inner.get("patch").is_some() || inner.get("patchType").is_some() {
        return Err(format!("a refusal carries a patch: {response}"));
    }
    if inner["status"]["message"] != message {
        return Err(format!("status.message is not {message:?}: {response}"));
    }
    Ok(())
}

/// SPEC §5: `allowed`, `patchType: JSONPatch` and `patch` a base64 string
/// (not an array of bytes, kube-rs/kube#1781) of a non-empty JSON Patch
/// that only adds where SPEC §4 puts things. The patch, decoded.
pub fn wire_patch(response: &Value) -> Result<Value, String> {
    let inner = &response["response"];
    if inner["allowed"] != true {
        return Err("patched but not allowed".into());
    }
    if inner["patchType"] != "JSONPatch" {
        return Err(format!("patchType is {}", inner["patchType"]));
    }
    let Some(encoded) = inner["patch"].as_str() else {
        return Err(format!(
            "patch is not a base64 string but {}",
            inner["patch"]
        ));
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("patch is not standard base64: {e}"))?;
    let patch: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("decoded patch is not JSON: {e}"))?;
    match &patch {
        Value::Array(ops) if !ops.is_empty() => {}
        _ => return Err(format!("decoded patch is not a non-empty array: {patch}")),
    }
    check_only_adds_our_fields(&patch)?;
    Ok(patch)
}

/// The patch only adds, and only where SPEC §4 puts things: our annotation,
/// pod volumes, and container mounts and env.
pub fn check_only_adds_our_fields(patch: &Value) -> Result<(), String> {
    for op in patch.as_array().into_iter().flatten() {
        if op["op"] != "add" {
            return Err(format!("the patch does more than add: {op}"));
        }
        let path = op["path"].as_str().unwrap_or_default();
        let tokens = pointer_tokens(path);
        let t: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let ok = match t.as_slice() {
            ["metadata"] | ["metadata", "annotations"] => true,
            ["metadata", "annotations", a] => *a == ANN_INJECTED,
            ["spec", "volumes"] | ["spec", "volumes", "-"] => true,
            ["spec", "containers" | "initContainers", index, "volumeMounts" | "env", rest @ ..] => {
                index.parse::<usize>().is_ok() && matches!(rest, [] | ["-"])
            }
            _ => false,
        };
        if !ok {
            return Err(format!("the patch adds outside our fields: {path:?}"));
        }
    }
    Ok(())
}

/// RFC 6901 tokens of a JSON pointer.
pub fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// `pod` with `patch` applied: the patch must apply (SPEC §5).
pub fn apply(pod: &Value, patch: &Value) -> Result<Value, String> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| format!("the patch is not a JSON Patch: {e}"))?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &ops)
        .map_err(|e| format!("the patch does not apply: {e}\npod: {pod}\npatch: {patch}"))?;
    Ok(patched)
}

/// `/a//b/`, `/a/./b` and `/a/b` name the same directory.
pub fn normalise(path: &str) -> String {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", segs.join("/"))
}

fn counts(items: impl Iterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

fn volume_names(pod: &Value) -> BTreeMap<String, usize> {
    counts(
        pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["name"].as_str().unwrap_or_default().to_owned()),
    )
}

fn mount_paths(pod: &Value, list: &str, i: usize) -> BTreeMap<String, usize> {
    counts(
        pod["spec"][list][i]["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| normalise(m["mountPath"].as_str().unwrap_or_default())),
    )
}

/// The patch adds no duplicate volume name and no second mount on one
/// directory in any container (duplicates the pod already had are not ours).
pub fn check_no_new_duplicates(pod: &Value, patched: &Value) -> Result<(), String> {
    let mut pairs = vec![(
        volume_names(pod),
        volume_names(patched),
        "volume".to_owned(),
    )];
    for list in ["initContainers", "containers"] {
        let n = patched["spec"][list].as_array().map_or(0, Vec::len);
        for i in 0..n {
            pairs.push((
                mount_paths(pod, list, i),
                mount_paths(patched, list, i),
                format!("spec.{list}[{i}] mount path"),
            ));
        }
    }
    for (before, after, what) in pairs {
        for (name, &n) in &after {
            let had = before.get(name).copied().unwrap_or(0);
            if n > 1 && n != had {
                return Err(format!(
                    "the patch made {what} {name:?} appear {n} times (the pod had it {had} times)\npod: {pod}\npatched: {patched}"
                ));
            }
        }
    }
    Ok(())
}
