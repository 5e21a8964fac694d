//! The SPEC on the test side, written once: the contract's names (SPEC §3-§4,
//! spelled here independently of the implementation's constants), the
//! invariants every answer must keep (SPEC §5), and the model of what a pod
//! should get (plain-data stores and selection in, [`expect`] and
//! [`check_patched_pod`]). Used by the golden, property
//! and fuzz-regression tests, and by the fuzz targets
//! (`#[path = "../../core/tests/model/spec.rs"] mod spec;`), so it depends only
//! on crates the fuzz crate has too: serde_json, base64 and json-patch.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

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
/// SPEC §7: the SDK variables, each set from its provider's default store.
/// A container that sets one keeps its own; the implementation keeps whole
/// groups (a credential's halves, the two region names, Azure's account and
/// key), so a run never mixes its own half with a store's (README).
pub const SDK_ENV_GROUPS: [&[&str]; 6] = [
    &[ENV_GOOGLE],
    &["STORAGE_EMULATOR_HOST"],
    &[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ],
    &["AWS_ENDPOINT_URL_S3"],
    &["AWS_REGION", "AWS_DEFAULT_REGION"],
    &[
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_KEY",
    ],
];

/// The variables of the SDK group of `var` (empty when it is none).
pub fn sdk_group(var: &str) -> &'static [&'static str] {
    SDK_ENV_GROUPS
        .iter()
        .find(|g| g.contains(&var))
        .copied()
        .unwrap_or(&[])
}
/// The prefix of the names the webhook gives its volumes when the pod owns
/// the preferred ones (the implementation's choice within SPEC §4).
pub const ALTERNATE_PREFIX: &str = "pw--";
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

// ---------------------------------------------------------------------------
// The model of what a pod should get (SPEC §3-§4), as plain data: the tests
// describe their stores and the selection they expect, [`expect`] works out
// the env, volumes and mounts, and [`check_patched_pod`] holds a patched pod
// to them.

/// Where a volume store's pod volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `hostPath`: a directory on the node.
    HostPath(String),
    /// `existingClaim`: a PersistentVolumeClaim.
    Claim(String),
    /// Only `mountPath`: an `emptyDir`.
    EmptyDir,
}

/// What backs a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A pod volume mounted at `mount_path` (a trailing `/` is ignored).
    Volume {
        mount_path: String,
        source: Source,
        read_only: bool,
    },
    /// A bucket, reached through keys of a Secret or keyless (SPEC §7).
    Cloud {
        /// `gcs`, `s3` or `azure`.
        provider: String,
        /// Used verbatim.
        bucket: String,
        /// `None` for a keyless store (then `secret_key` is `None` too).
        secret: Option<String>,
        secret_key: Option<String>,
        /// As the config gives it, one trailing `/` dropped.
        endpoint: Option<String>,
        region: Option<String>,
        /// The SDK key fields given: (`accessKeyIdKey`, key), ...
        sdk_keys: Vec<(String, String)>,
    },
}

/// One store of the config, as the tests describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: String,
    pub kind: StoreKind,
    /// The pod volume's name, when the test knows it (SPEC only asks for a
    /// `pw-` name of at most 63 bytes, apart from the pod's own).
    pub volume_name: Option<String>,
}

impl StoreSpec {
    /// SPEC §4: the mount path of a volume store (no trailing `/`), the
    /// bucket URL verbatim of a cloud store.
    pub fn path(&self) -> String {
        match &self.kind {
            StoreKind::Volume { mount_path, .. } => mount_path.trim_end_matches('/').to_owned(),
            StoreKind::Cloud { bucket, .. } => bucket.clone(),
        }
    }

    pub fn provider(&self) -> Option<&str> {
        match &self.kind {
            StoreKind::Cloud { provider, .. } => Some(provider),
            StoreKind::Volume { .. } => None,
        }
    }

    /// The added pod volume of a volume store, in short (see [`signature`]).
    fn volume_signature(&self) -> Option<String> {
        match &self.kind {
            StoreKind::Volume {
                source, read_only, ..
            } => Some(match source {
                Source::HostPath(p) => format!("hostPath {p}"),
                Source::Claim(c) => format!("claim {c} readOnly={read_only}"),
                Source::EmptyDir => "emptyDir".to_owned(),
            }),
            StoreKind::Cloud { .. } => None,
        }
    }
}

/// What a pod selected (SPEC §3), resolved by the test: the data stores
/// (each once, by name), the outputs store and the run's sub-path in it,
/// and the targeted containers (`None`: all of them).
#[derive(Debug, Clone)]
pub struct Selection {
    pub data: Vec<StoreSpec>,
    pub outputs: Option<(StoreSpec, String)>,
    pub containers: Option<BTreeSet<String>>,
}

/// The outputs sub-path SPEC §3 gives a run, first match wins: the
/// sub-path annotation, the unique-name annotation, `<namespace>/<job name>`
/// for a pod whose one controller ownerReference is a `batch/v1` `Job`,
/// `<namespace>/<name>`, `<namespace>/<generateName><uid>`, `<namespace>/<uid>`.
pub fn sub_path(
    annotations: &Value,
    namespace: &str,
    metadata: &Value,
    uid: &str,
) -> Option<String> {
    if let Some(p) = annotations[ANN_SUBPATH].as_str() {
        return Some(p.to_owned());
    }
    if let Some(u) = annotations[ANN_UNIQUE_NAME].as_str() {
        return unique_name_path(u);
    }
    if let Some(job) = controller_job(metadata) {
        return Some(format!("{namespace}/{job}"));
    }
    Some(
        match (metadata["name"].as_str(), metadata["generateName"].as_str()) {
            (Some(name), _) => format!("{namespace}/{name}"),
            (None, Some(g)) => format!("{namespace}/{g}{uid}"),
            (None, None) => format!("{namespace}/{uid}"),
        },
    )
}

/// The Job named by the pod's one controller ownerReference, when it is a
/// `batch/v1` `Job` with a name (SPEC §3 rule 3). Two controllers name none.
pub fn controller_job(metadata: &Value) -> Option<&str> {
    let refs = metadata["ownerReferences"].as_array()?;
    let controllers: Vec<&Value> = refs
        .iter()
        .filter(|r| r["controller"] == Value::Bool(true))
        .collect();
    match controllers.as_slice() {
        [r] if r["apiVersion"] == "batch/v1" && r["kind"] == "Job" => {
            r["name"].as_str().filter(|n| !n.is_empty())
        }
        _ => None,
    }
}

/// An env var SPEC §4 prescribes.
#[derive(Debug, Clone, PartialEq)]
pub enum WantEnv {
    /// This exact `value`, no `valueFrom`.
    Exact(String),
    /// A `value` holding this JSON object, its top-level keys in sorted order.
    SortedJson(Value),
    /// This `valueFrom`, no `value`.
    From(Value),
}

impl WantEnv {
    fn matches(&self, got: &Value) -> bool {
        let value = got.get("value").and_then(Value::as_str);
        match self {
            WantEnv::Exact(v) => value == Some(v.as_str()) && got.get("valueFrom").is_none(),
            WantEnv::SortedJson(want) => value.is_some_and(|text| {
                serde_json::from_str::<Value>(text).ok().as_ref() == Some(want)
                    && top_level_keys_sorted(text, want)
            }),
            WantEnv::From(from) => got.get("valueFrom") == Some(from) && value.is_none(),
        }
    }
}

impl std::fmt::Display for WantEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WantEnv::Exact(v) => write!(f, "value {v:?}"),
            WantEnv::SortedJson(v) => write!(f, "value {v} (keys sorted)"),
            WantEnv::From(v) => write!(f, "valueFrom {v}"),
        }
    }
}

/// Whether the object's keys appear in `text` in sorted order.
fn top_level_keys_sorted(text: &str, object: &Value) -> bool {
    let Some(map) = object.as_object() else {
        return false;
    };
    // serde_json's Map iterates in sorted order; find each key in the text.
    let mut from = 0;
    for key in map.keys() {
        let needle = format!("{}:", Value::String(key.clone()));
        match text[from..].find(&needle) {
            Some(at) => from += at + needle.len(),
            None => return false,
        }
    }
    true
}

/// A mount SPEC §4 asks for in every targeted container.
#[derive(Debug, Clone, PartialEq)]
pub struct WantMount {
    pub path: String,
    pub sub_path: Option<String>,
    pub read_only: bool,
    /// The added volume it must name, in short (see [`signature`]).
    pub volume: String,
    /// Its exact name, when known.
    pub volume_name: Option<String>,
}

/// What SPEC §3-§4 says a pod with this selection gets.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The `persistence-injected` annotation, parsed.
    pub injected: Value,
    /// Each var set exactly once in every targeted container.
    pub env: BTreeMap<String, WantEnv>,
    /// The secret and key of the GCS key file, if one is mounted.
    pub gcs_key: Option<(String, String)>,
    /// The added pod volumes, in short, sorted.
    pub volumes: Vec<String>,
    pub mounts: Vec<WantMount>,
    pub containers: Option<BTreeSet<String>>,
}

impl Expected {
    pub fn targets(&self, container: &str) -> bool {
        self.containers
            .as_ref()
            .is_none_or(|c| c.contains(container))
    }
}

fn secret_signature(secret: &str, key: &str) -> String {
    format!(
        "secret {secret} {}",
        serde_json::json!([{"key": key, "path": key}])
    )
}

/// SPEC §4 for a selection.
pub fn expect(sel: &Selection) -> Expected {
    use serde_json::json;
    let outputs_path = sel
        .outputs
        .as_ref()
        .map(|(s, sub)| format!("{}/{sub}", s.path().trim_end_matches('/')));
    let injected = json!({
        "data": sel.data.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "outputs": sel.outputs.as_ref().map(|(s, _)| s.name.as_str()),
        "outputsPath": outputs_path,
    });

    let mut data_paths = BTreeMap::new();
    let mut access_keys = serde_json::Map::new();
    let mut secret_keys = BTreeMap::new();
    let mut defaults: BTreeMap<String, StoreSpec> = BTreeMap::new();
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    // (store, where its path is, sub-path): data stores, then outputs.
    let mut picked: Vec<(&StoreSpec, String, Option<String>)> = Vec::new();
    for s in &sel.data {
        data_paths.insert(s.name.clone(), s.path());
        picked.push((s, s.path(), None));
    }
    if let (Some((s, sub)), Some(path)) = (&sel.outputs, &outputs_path) {
        picked.push((s, path.clone(), Some(sub.clone())));
    }
    for (i, (store, path, sub)) in picked.iter().enumerate() {
        let is_outputs = sel.outputs.is_some() && i + 1 == picked.len();
        match &store.kind {
            StoreKind::Cloud {
                provider,
                secret,
                secret_key,
                ..
            } => {
                // A keyless store has no polystores entry and no Secret.
                if let (Some(secret), Some(secret_key)) = (secret, secret_key) {
                    access_keys.insert(
                        path.clone(),
                        json!({"store": provider, "secret_key": secret_key}),
                    );
                    secret_keys.insert(secret_key.clone(), secret.clone());
                }
                // Each provider's default store: the outputs store if it is
                // of that provider, else the first data store of it by name.
                if !defaults.contains_key(provider.as_str()) || is_outputs {
                    defaults.insert(provider.clone(), (*store).clone());
                }
            }
            StoreKind::Volume { read_only, .. } => {
                let volume = store.volume_signature().expect("a volume store");
                volumes.push(volume.clone());
                mounts.push(WantMount {
                    path: path.clone(),
                    sub_path: sub.clone(),
                    read_only: *read_only,
                    volume,
                    volume_name: store.volume_name.clone(),
                });
            }
        }
    }

    let mut env = BTreeMap::new();
    env.insert(
        ENV_DATA_PATHS.to_owned(),
        WantEnv::Exact(serde_json::to_string(&data_paths).expect("strings")),
    );
    if let Some(path) = &outputs_path {
        env.insert(ENV_OUTPUTS_PATH.to_owned(), WantEnv::Exact(path.clone()));
    }
    if !access_keys.is_empty() {
        env.insert(
            ENV_ACCESS_KEYS.to_owned(),
            WantEnv::SortedJson(Value::Object(access_keys)),
        );
    }
    for (key, secret) in &secret_keys {
        env.insert(
            key.clone(),
            WantEnv::From(json!({"secretKeyRef": {"name": secret, "key": key}})),
        );
    }
    let gcs_key = sdk_env(&defaults, &mut env);
    if let Some((secret, key)) = &gcs_key {
        let volume = secret_signature(secret, key);
        volumes.push(volume.clone());
        mounts.push(WantMount {
            path: GCS_CREDENTIALS_DIR.to_owned(),
            sub_path: None,
            read_only: true,
            volume,
            volume_name: None,
        });
    }
    volumes.sort();
    Expected {
        injected,
        env,
        gcs_key,
        volumes,
        mounts,
        containers: sel.containers.clone(),
    }
}

/// SPEC §7: the SDK variables of each provider's default store, into
/// `env`; the GCS key file's secret and key, if one is mounted.
fn sdk_env(
    defaults: &BTreeMap<String, StoreSpec>,
    env: &mut BTreeMap<String, WantEnv>,
) -> Option<(String, String)> {
    use serde_json::json;
    let mut gcs_key = None;
    for store in defaults.values() {
        let StoreKind::Cloud {
            provider,
            bucket,
            secret,
            secret_key,
            endpoint,
            region,
            sdk_keys,
        } = &store.kind
        else {
            continue;
        };
        let mut exact = |var: &str, value: &str| {
            env.insert(var.to_owned(), WantEnv::Exact(value.to_owned()));
        };
        let key_of = |field: &str| {
            sdk_keys
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, key)| key.clone())
        };
        let mut refs: Vec<(&str, String)> = Vec::new();
        match provider.as_str() {
            "gcs" => {
                if let (Some(secret), Some(key)) = (secret, secret_key) {
                    gcs_key = Some((secret.clone(), key.clone()));
                    exact(ENV_GOOGLE, &format!("{GCS_CREDENTIALS_DIR}/{key}"));
                }
                if let Some(e) = endpoint {
                    exact("STORAGE_EMULATOR_HOST", e);
                }
            }
            "s3" => {
                if let Some(e) = endpoint {
                    exact("AWS_ENDPOINT_URL_S3", e);
                }
                if let Some(r) = region {
                    exact("AWS_REGION", r);
                    exact("AWS_DEFAULT_REGION", r);
                }
                for (field, var) in [
                    ("accessKeyIdKey", "AWS_ACCESS_KEY_ID"),
                    ("secretAccessKeyKey", "AWS_SECRET_ACCESS_KEY"),
                    ("sessionTokenKey", "AWS_SESSION_TOKEN"),
                ] {
                    if let Some(key) = key_of(field) {
                        refs.push((var, key));
                    }
                }
            }
            _ => {
                // wasbs://<container>@<account>.blob.core.windows.net/...
                let account = bucket
                    .trim_start_matches("wasbs://")
                    .split('/')
                    .next()
                    .and_then(|host| host.split_once('@'))
                    .and_then(|(_, h)| h.strip_suffix(".blob.core.windows.net"));
                if let Some(account) = account {
                    exact("AZURE_STORAGE_ACCOUNT_NAME", account);
                }
                for (field, var) in [
                    ("connectionStringKey", "AZURE_STORAGE_CONNECTION_STRING"),
                    ("accountKeyKey", "AZURE_STORAGE_ACCOUNT_KEY"),
                ] {
                    if let Some(key) = key_of(field) {
                        refs.push((var, key));
                    }
                }
            }
        }
        if let Some(secret) = secret {
            for (var, key) in refs {
                env.insert(
                    var.to_owned(),
                    WantEnv::From(json!({"secretKeyRef": {"name": secret, "key": key}})),
                );
            }
        }
    }
    gcs_key
}

/// A pod volume in short: its source and what the model cares about.
pub fn signature(volume: &Value) -> String {
    if let Some(h) = volume.get("hostPath") {
        format!("hostPath {}", h["path"].as_str().unwrap_or_default())
    } else if let Some(c) = volume.get("persistentVolumeClaim") {
        format!(
            "claim {} readOnly={}",
            c["claimName"].as_str().unwrap_or_default(),
            c["readOnly"].as_bool().unwrap_or(false)
        )
    } else if volume.get("emptyDir").is_some_and(Value::is_object) {
        "emptyDir".to_owned()
    } else if let Some(s) = volume.get("secret") {
        format!(
            "secret {} {}",
            s["secretName"].as_str().unwrap_or_default(),
            s["items"]
        )
    } else {
        format!("unexpected {volume}")
    }
}

fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// No item appears more often than once, or than the pod itself had it
/// (duplicates the pod already had are not ours).
fn unique(what: &str, before: &[String], after: &[String]) -> Result<(), String> {
    let had = counts(before.iter().cloned());
    for (item, n) in counts(after.iter().cloned()) {
        let was = had.get(&item).copied().unwrap_or(0);
        if n > 1 && n != was {
            return Err(format!(
                "{what}: {item:?} appears {n} times (the pod had it {was} times)"
            ));
        }
    }
    Ok(())
}

fn field_of(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|v| v[key].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Removes from `patched[key]` what was appended to `original[key]`, after
/// checking that the original list is untouched at its head, and returns
/// the appended items.
fn strip_appended(original: &Value, patched: &mut Value, key: &str) -> Result<Vec<Value>, String> {
    let Some(obj) = patched.as_object_mut() else {
        return Err(format!("{key}: parent is not an object"));
    };
    match original.get(key) {
        Some(Value::Array(orig)) => {
            let list = obj
                .get_mut(key)
                .and_then(Value::as_array_mut)
                .ok_or_else(|| format!("{key} is no longer a list"))?;
            if list.len() < orig.len() || list[..orig.len()] != orig[..] {
                return Err(format!("{key} changed in place"));
            }
            Ok(list.split_off(orig.len()))
        }
        Some(Value::Null) => match obj.insert(key.to_owned(), Value::Null) {
            Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(added)) if !added.is_empty() => Ok(added),
            other => Err(format!("{key}: null replaced by {other:?}")),
        },
        Some(other) => Err(format!("{key} was {other}, not a list, and was patched")),
        None => match obj.remove(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(added)) if !added.is_empty() => Ok(added),
            Some(other) => Err(format!("{key} added as {other}")),
        },
    }
}

fn remove_injected(pod: &mut Value) {
    if let Some(a) = pod
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(ANN_INJECTED);
    }
}

/// SPEC §3-§5 for a patched pod against the model: the injected annotation,
/// the added volumes, each container's env and mounts, and nothing else
/// moved.
pub fn check_patched_pod(original: &Value, patched: &Value, want: &Expected) -> Result<(), String> {
    use serde_json::json;
    // The injected annotation records the selection (SPEC §4).
    let injected: Value = patched["metadata"]["annotations"][ANN_INJECTED]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or("no readable polyaxon.com/persistence-injected annotation")?;
    let names: Vec<String> = list(&injected, "data")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    unique("persistence-injected data", &[], &names)?;
    if injected != want.injected {
        return Err(format!(
            "annotation {ANN_INJECTED} is {injected}, SPEC gives {}",
            want.injected
        ));
    }

    // What moved: strip our fields and compare the rest (SPEC §5: patch the
    // raw object).
    let mut stripped = patched.clone();
    let mut orig = original.clone();
    remove_injected(&mut stripped);
    remove_injected(&mut orig);
    let own_annotations = orig.pointer("/metadata/annotations");
    if own_annotations.is_none_or(Value::is_null) {
        let had_null = own_annotations.is_some();
        let meta = stripped
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or("no metadata")?;
        if meta.remove("annotations") != Some(json!({})) {
            return Err("annotations added with more than ours".into());
        }
        if had_null {
            meta.insert("annotations".into(), Value::Null);
        }
    }
    if orig.get("metadata").is_none() {
        let pod = stripped.as_object_mut().ok_or("the pod is not an object")?;
        if pod.remove("metadata") != Some(json!({})) {
            return Err("metadata added with more than our annotation".into());
        }
    }

    // A pod with no spec has nothing to mount into: it only gets the record.
    if !orig.get("spec").is_some_and(Value::is_object) {
        if stripped != orig {
            return Err(format!(
                "a pod without a spec changed beyond the record\npod: {original}\npatched: {patched}"
            ));
        }
        return Ok(());
    }

    // Pod volumes: exactly the stores' volumes added, named apart.
    let spec = patched.get("spec").ok_or("no spec")?;
    unique(
        "pod volume names",
        &field_of(list(&orig["spec"], "volumes"), "name"),
        &field_of(list(spec, "volumes"), "name"),
    )?;
    let added = strip_appended(&orig["spec"], &mut stripped["spec"], "volumes")?;
    let mut added_by_name = BTreeMap::new();
    for v in &added {
        let name = v["name"].as_str().unwrap_or_default();
        if !name.starts_with(VOLUME_PREFIX) || name.len() > 63 {
            return Err(format!(
                "added volume {v} is not named pw-<...> within 63 bytes"
            ));
        }
        added_by_name.insert(name.to_owned(), signature(v));
    }
    // One of ours the pod already has (a reinvocation, a replay) is kept,
    // not added again.
    let kept: BTreeMap<String, String> = list(&orig["spec"], "volumes")
        .iter()
        .filter_map(|v| v["name"].as_str().map(|n| (n.to_owned(), signature(v))))
        .filter(|(n, sig)| {
            n.starts_with(VOLUME_PREFIX)
                && want.mounts.iter().any(|m| {
                    m.volume == *sig
                        && (m.volume_name.as_ref().is_none_or(|known| known == n)
                            || n.starts_with(ALTERNATE_PREFIX))
                })
        })
        .collect();
    let mut signatures: Vec<String> = added_by_name.values().cloned().collect();
    let kept_signatures: BTreeSet<&String> = kept.values().collect();
    let mut wanted: Vec<String> = want
        .volumes
        .iter()
        .filter(|sig| !kept_signatures.contains(sig))
        .cloned()
        .collect();
    signatures.sort();
    wanted.sort();
    if signatures != wanted {
        return Err(format!(
            "volumes added {signatures:?}, SPEC gives {wanted:?} (the pod had {kept:?})"
        ));
    }
    added_by_name.extend(kept);
    // SPEC §4: a store's volume gets another name when the pod already owns
    // its preferred one with other content.
    let own_volume_names: BTreeSet<String> = field_of(list(&orig["spec"], "volumes"), "name")
        .into_iter()
        .collect();

    for key in ["initContainers", "containers"] {
        let now = list(spec, key);
        let was = list(&orig["spec"], key);
        if now.len() != was.len() {
            return Err(format!("spec.{key} changed length"));
        }
        for (i, (c, before)) in now.iter().zip(was).enumerate() {
            let name = c["name"].as_str().unwrap_or_default();
            unique(
                &format!("mount paths of {name}"),
                &field_of(list(before, "volumeMounts"), "mountPath"),
                &field_of(list(c, "volumeMounts"), "mountPath"),
            )?;
            unique(
                &format!("env names of {name}"),
                &field_of(list(before, "env"), "name"),
                &field_of(list(c, "env"), "name"),
            )?;
            if !want.targets(name) {
                if c != before {
                    return Err(format!("container {name} is not targeted but changed"));
                }
                continue;
            }
            check_container(name, before, c, want, &added_by_name, &own_volume_names)?;
            let c_stripped = &mut stripped["spec"][key][i];
            strip_appended(before, c_stripped, "env")?;
            strip_appended(before, c_stripped, "volumeMounts")?;
        }
    }
    if stripped != orig {
        return Err(format!(
            "the pod changed outside the webhook's fields\npod: {original}\npatched: {patched}"
        ));
    }
    Ok(())
}

fn env_named<'v>(c: &'v Value, name: &str) -> Vec<&'v Value> {
    list(c, "env")
        .iter()
        .filter(|e| e["name"] == name)
        .collect()
}

/// One targeted container: its env and mounts (SPEC §4).
fn check_container(
    name: &str,
    was: &Value,
    now: &Value,
    want: &Expected,
    added: &BTreeMap<String, String>,
    own_volume_names: &BTreeSet<String>,
) -> Result<(), String> {
    use serde_json::json;
    for (var, w) in &want.env {
        let found = env_named(now, var);
        let had = env_named(was, var);
        // SPEC §7: an SDK variable group the container sets itself is kept
        // whole, none of it added.
        let group = sdk_group(var);
        if group.iter().any(|g| !env_named(was, g).is_empty()) {
            if found != had {
                return Err(format!(
                    "container {name}: {var} changed although the container sets its own {group:?}"
                ));
            }
            continue;
        }
        // Set once; or, when the container already sets it as SPEC would,
        // kept as it was.
        if (had.is_empty() && found.len() != 1) || (!had.is_empty() && found != had) {
            return Err(format!(
                "container {name}: {var} set {} times (it had {})",
                found.len(),
                had.len()
            ));
        }
        if let Some(bad) = found.iter().find(|e| !w.matches(e)) {
            return Err(format!(
                "container {name}: env {var} is {bad}, SPEC gives {w}"
            ));
        }
    }
    // Added env: only what SPEC §4 and §7 prescribe.
    let own_names: BTreeSet<&str> = list(was, "env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for e in list(now, "env") {
        let var = e["name"].as_str().unwrap_or_default();
        if !own_names.contains(var) && !want.env.contains_key(var) {
            return Err(format!("container {name}: unexpected env {e}"));
        }
    }

    let mounts = list(now, "volumeMounts");
    let own_count = list(was, "volumeMounts").len();
    if mounts.len() != own_count + want.mounts.len() {
        return Err(format!(
            "container {name}: {} mounts, wanted its {own_count} plus {}",
            mounts.len(),
            want.mounts.len()
        ));
    }
    for m in &want.mounts {
        let found: Vec<&Value> = mounts
            .iter()
            .filter(|x| x["mountPath"] == *m.path)
            .collect();
        let [mount] = found.as_slice() else {
            return Err(format!(
                "container {name}: {} mounts at {}",
                found.len(),
                m.path
            ));
        };
        let volume = mount["name"].as_str().unwrap_or_default();
        if added.get(volume) != Some(&m.volume) {
            return Err(format!(
                "container {name}: the mount at {} names {volume:?}, not an added volume {}",
                m.path, m.volume
            ));
        }
        if m.volume_name
            .as_deref()
            .is_some_and(|n| n != volume && !own_volume_names.contains(n))
        {
            return Err(format!(
                "container {name}: the mount at {} names {volume:?}, wanted {:?}",
                m.path, m.volume_name
            ));
        }
        let mut exact = json!({"name": volume, "mountPath": m.path});
        if let Some(sub) = &m.sub_path {
            exact["subPath"] = json!(sub);
        }
        if m.read_only {
            exact["readOnly"] = json!(true);
        }
        if **mount != exact {
            return Err(format!("container {name}: mount {mount}, wanted {exact}"));
        }
    }
    Ok(())
}
