//! Golden fixtures: every directory under `tests/fixtures/` with a
//! `review.json` is a case. Each is reviewed with `tests/fixtures/config.yaml`
//! (or the case's own `config.yaml`) and the answer is compared with the
//! case's `expected.json`:
//!
//! ```json
//! {"response": <the AdmissionReview response>,
//!  "patch":    <the response's patch, base64-decoded, or null>,
//!  "pod":      <request.object with the patch applied, or null when denied>}
//! ```
//!
//! After a deliberate change of behaviour, rewrite the files with
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test --test golden
//! ```
//!
//! and read every diff: a golden file records what a reviewer agreed with, it
//! is not a snapshot to accept blindly. The inputs come from
//! `tests/fixtures/make_reviews.py` (see `tests/fixtures/README.md`).
//!
//! Independently of the golden files, every case is also checked against
//! SPEC.md directly: the outcome the case is about (the `WANT` table), the
//! wire form of the response (uid and apiVersion echoed, a base64 `JSONPatch`
//! string, kube-rs/kube#1781), that the patch applies and only adds our
//! fields, that the patched pod is still a `Pod`, that admitting it again
//! changes nothing, and the values SPEC §3-§5 prescribe for the stores the
//! pod selected.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use persistence_webhook::config::{Backend, Role, Source, Store};
use persistence_webhook::k8s::Pod;
use persistence_webhook::review::{review, Decision, Skip};
use persistence_webhook::Config;
use serde_json::{json, Value};

#[path = "common/spec.rs"]
mod spec;

use spec::{
    ANN_INJECTED as INJECTED, ANN_SELECTION as SELECTION, ANN_SUBPATH as SUBPATH,
    ANN_UNIQUE_NAME as UNIQUE_NAME, ENV_ACCESS_KEYS as ACCESS_KEYS, ENV_DATA_PATHS as DATA_PATHS,
    ENV_GOOGLE as GOOGLE_CREDENTIALS, ENV_OUTPUTS_PATH as OUTPUTS_PATH,
};

/// What each case must decide, whatever its golden file says.
enum Want {
    Patched,
    Unchanged(Skip),
    /// Denied, with fragments the message must contain.
    Denied(&'static [&'static str]),
}

const STORES_IN_DEFAULT: &str = "Stores available in namespace \"default\": data: data-azure, data-gcs-raw, data-gcs3, data-s3, data1, data2, scratch; outputs: outputs-gcs3, outputs-s3, outputs1, outputs2";

const WANT: &[(&str, Want)] = &[
    ("annotation-escaping", Want::Patched),
    ("bare-pod", Want::Patched),
    ("containers-subset", Want::Patched),
    ("containers-subset-init", Want::Patched),
    ("data-azure", Want::Patched),
    ("data-empty", Want::Patched),
    ("data-gcs", Want::Patched),
    ("data-s3", Want::Patched),
    ("data-two-gcs", Want::Patched),
    ("default-outputs-alphabetical", Want::Patched),
    ("defaults", Want::Patched),
    (
        "deny-bad-subpath",
        Want::Denied(&["annotation polyaxon.com/outputs-subpath", "\"../../etc\""]),
    ),
    (
        "deny-bad-yaml",
        Want::Denied(&[
            "annotation polyaxon.com/persistence is not a valid selection",
            STORES_IN_DEFAULT,
        ]),
    ),
    (
        "deny-env-conflict",
        Want::Denied(&["container \"main\"", "POLYAXON_RUN_OUTPUTS_PATH"]),
    ),
    (
        "deny-mount-conflict",
        Want::Denied(&["container \"main\"", "\"/data/1\"", "\"cache\"", "data1"]),
    ),
    (
        "deny-outputs-list",
        Want::Denied(&[
            "annotation polyaxon.com/persistence",
            "outputs must be a single store name",
            STORES_IN_DEFAULT,
        ]),
    ),
    (
        "deny-unknown-store",
        Want::Denied(&[
            "annotation polyaxon.com/persistence",
            "\"imagenet\"",
            STORES_IN_DEFAULT,
        ]),
    ),
    ("dry-run", Want::Patched),
    ("explicit-data-outputs", Want::Patched),
    ("generate-name", Want::Patched),
    ("init-containers", Want::Patched),
    ("mixed-volume-cloud", Want::Patched),
    ("namespace-store-granted", Want::Patched),
    ("namespace-store-not-default", Want::Patched),
    (
        "namespace-store-refused",
        Want::Denied(&[
            "annotation polyaxon.com/persistence",
            "\"team-a-data\"",
            "namespace \"default\"",
            STORES_IN_DEFAULT,
        ]),
    ),
    ("not-a-pod", Want::Unchanged(Skip::NotPod)),
    ("opted-out", Want::Unchanged(Skip::OptedOut)),
    ("outputs-gcs", Want::Patched),
    ("outputs-subpath", Want::Patched),
    ("own-google-credentials", Want::Patched),
    ("replayed-injected", Want::Unchanged(Skip::AlreadyInjected)),
    ("unique-name", Want::Patched),
    ("update", Want::Unchanged(Skip::NotCreate)),
    ("v1beta1", Want::Patched),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Case {
    dir: PathBuf,
    config: Config,
    body: Vec<u8>,
    request: Value,
}

fn load_config(path: &Path) -> Config {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Config::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_case(name: &str) -> Case {
    let dir = fixtures().join(name);
    let own = dir.join("config.yaml");
    let config = if own.exists() {
        load_config(&own)
    } else {
        load_config(&fixtures().join("config.yaml"))
    };
    let body = std::fs::read(dir.join("review.json"))
        .unwrap_or_else(|e| panic!("{name}: cannot read review.json: {e}"));
    let request =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{name}: review.json: {e}"));
    Case {
        dir,
        config,
        body,
        request,
    }
}

/// Every case directory, by name. A directory without review.json is a
/// mistake (a misnamed file would silently drop the case).
fn case_names() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(fixtures()).expect("tests/fixtures is readable") {
        let path = entry.expect("a directory entry").path();
        if !path.is_dir() {
            continue;
        }
        assert!(
            path.join("review.json").is_file(),
            "{} has no review.json",
            path.display()
        );
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("case directory names are UTF-8");
        names.push(name.to_owned());
    }
    names.sort();
    names
}

#[test]
fn every_case_has_a_wanted_outcome() {
    let dirs: BTreeSet<String> = case_names().into_iter().collect();
    let table: BTreeSet<String> = WANT.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        dirs, table,
        "tests/fixtures/<case>/ and the WANT table in tests/golden.rs must list the same cases"
    );
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0");
    let mut failures = Vec::new();
    for (name, want) in WANT {
        let case = load_case(name);
        let actual = match run_case(&case, want) {
            Ok(actual) => actual,
            Err(why) => {
                failures.push(format!("{name}: {why}"));
                continue;
            }
        };
        let path = case.dir.join("expected.json");
        let mut text = serde_json::to_string_pretty(&actual).expect("JSON values serialise");
        text.push('\n');
        if update {
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            continue;
        }
        let expected: Value = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "{name}: expected.json: {e} (run with UPDATE_GOLDEN=1 to write it)"
                ));
                continue;
            }
        };
        if let Some(diff) = first_difference(&expected, &actual, String::new()) {
            failures.push(format!(
                "{name}: differs from expected.json at {diff} (if intended, rerun with UPDATE_GOLDEN=1 and review the diff)"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Reviews a case, checks it against SPEC.md, and returns the golden value.
fn run_case(case: &Case, want: &Want) -> Result<Value, String> {
    let reviewed = review(&case.config, &case.body).map_err(|e| format!("review failed: {e}"))?;
    let response: Value = serde_json::from_slice(&reviewed.response)
        .map_err(|e| format!("the response is not JSON: {e}"))?;
    check_envelope(&case.request, &response)?;
    let inner = &response["response"];
    let object = case.request["request"]["object"].clone();

    let (patch, pod) = match (want, &reviewed.decision) {
        (Want::Patched, Decision::Patched(typed)) => {
            let patch = check_patch_wire_form(inner)?;
            let typed = serde_json::to_value(typed).map_err(|e| e.to_string())?;
            if typed != patch {
                return Err("the response's patch is not the decision's patch".into());
            }
            spec::check_only_adds_our_fields(&patch)?;
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("the patch is not a JSON Patch: {e}"))?;
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &ops)
                .map_err(|e| format!("the patch does not apply to request.object: {e}"))?;
            serde_json::from_value::<Pod>(patched.clone())
                .map_err(|e| format!("the patched pod is not a valid Pod: {e}"))?;
            check_admitted_again(case, &patched)?;
            check_spec(case, &object, &patched)?;
            (patch, patched)
        }
        (Want::Unchanged(skip), Decision::Unchanged(got)) => {
            if got != skip {
                return Err(format!("unchanged because {got:?}, wanted {skip:?}"));
            }
            check_allowed_without_patch(inner)?;
            (Value::Null, object)
        }
        (Want::Denied(fragments), Decision::Denied(denial)) => {
            let message = denial.to_string();
            if inner["allowed"] != json!(false) {
                return Err("denied but response.allowed is not false".into());
            }
            if inner.get("patch").is_some() || inner.get("patchType").is_some() {
                return Err("a denial carries a patch".into());
            }
            if inner["status"]["message"] != json!(message) {
                return Err(format!(
                    "response.status.message is not the denial message {message:?}"
                ));
            }
            for f in *fragments {
                if !message.contains(f) {
                    return Err(format!("the denial {message:?} does not mention {f:?}"));
                }
            }
            (Value::Null, Value::Null)
        }
        (_, got) => return Err(format!("unexpected decision {got:?}")),
    };
    Ok(json!({"response": response, "patch": patch, "pod": pod}))
}

/// SPEC §5: the response echoes the request's uid and apiVersion.
fn check_envelope(request: &Value, response: &Value) -> Result<(), String> {
    if response["apiVersion"] != request["apiVersion"] {
        return Err(format!(
            "response apiVersion {} does not echo the request's {}",
            response["apiVersion"], request["apiVersion"]
        ));
    }
    if response["kind"] != json!("AdmissionReview") {
        return Err(format!("response kind is {}", response["kind"]));
    }
    let uid = &request["request"]["uid"];
    if !uid.is_string() || response["response"]["uid"] != *uid {
        return Err(format!(
            "response uid {} does not echo the request's {uid}",
            response["response"]["uid"]
        ));
    }
    Ok(())
}

fn check_allowed_without_patch(inner: &Value) -> Result<(), String> {
    if inner["allowed"] != json!(true) {
        return Err("unchanged but not allowed".into());
    }
    if inner.get("patch").is_some() || inner.get("patchType").is_some() {
        return Err("unchanged but the response has a patch".into());
    }
    Ok(())
}

/// SPEC §5: `patchType: JSONPatch` and `patch` a base64 string (not an array
/// of bytes, kube-rs/kube#1781) that decodes to a JSON array.
fn check_patch_wire_form(inner: &Value) -> Result<Value, String> {
    if inner["allowed"] != json!(true) {
        return Err("patched but not allowed".into());
    }
    if inner["patchType"] != json!("JSONPatch") {
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
        Value::Array(ops) if !ops.is_empty() => Ok(patch),
        _ => Err(format!("decoded patch is not a non-empty array: {patch}")),
    }
}

/// SPEC §5: admitting the patched pod again (same request) changes nothing.
fn check_admitted_again(case: &Case, patched: &Value) -> Result<(), String> {
    let mut again = case.request.clone();
    again["request"]["object"] = patched.clone();
    let body = serde_json::to_vec(&again).map_err(|e| e.to_string())?;
    let reviewed = review(&case.config, &body).map_err(|e| e.to_string())?;
    match reviewed.decision {
        Decision::Unchanged(_) => Ok(()),
        other => Err(format!(
            "admitting the patched pod again is not unchanged: {other:?}"
        )),
    }
}

/// The run's selection as SPEC §3 defines it, from the pod's annotation.
struct Selected<'c> {
    data: Vec<&'c Store>,
    outputs: Option<&'c Store>,
    containers: Option<BTreeSet<String>>,
}

fn selected<'c>(config: &'c Config, namespace: &str, annotations: &Value) -> Selected<'c> {
    let raw: serde_yaml::Value = annotations[SELECTION]
        .as_str()
        .map(|text| serde_yaml::from_str(text).expect("the case's selection is valid YAML"))
        .unwrap_or(serde_yaml::Value::Null);
    let names = |key: &str| -> Option<Vec<String>> {
        raw.get(key).map(|v| {
            v.as_sequence()
                .expect("a list")
                .iter()
                .map(|n| n.as_str().expect("a name").to_owned())
                .collect()
        })
    };
    let data = match names("data") {
        None => config.available(Role::Data, namespace).collect(),
        Some(list) => {
            let set: BTreeSet<String> = list.into_iter().collect();
            set.iter()
                .map(|n| config.store(n).expect("a known store"))
                .collect()
        }
    };
    let outputs = match raw.get("outputs").and_then(|v| v.as_str()) {
        None => config.default_outputs(namespace),
        Some(name) => config.store(name),
    };
    Selected {
        data,
        outputs,
        containers: names("containers").map(|l| l.into_iter().collect()),
    }
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name").to_owned();
        assert!(
            out.insert(name.clone(), e.clone()).is_none(),
            "env {name} appears twice in {}",
            container["name"]
        );
    }
    out
}

fn plain(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// An env var SPEC §4 prescribes.
enum WantEnv {
    /// This exact `value`.
    Exact(String),
    /// A `value` holding this JSON object, its top-level keys in sorted order.
    SortedJson(Value),
    /// This `valueFrom`.
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

/// SPEC §3-§5 for a patched pod: the injected annotation, the volumes, and
/// each container's mounts and env, derived from the config and the pod's
/// own annotations (not from the webhook's code).
fn check_spec(case: &Case, original: &Value, patched: &Value) -> Result<(), String> {
    let request = &case.request["request"];
    let namespace = request["namespace"].as_str().expect("request.namespace");
    let annotations = &original["metadata"]["annotations"];
    let sel = selected(&case.config, namespace, annotations);

    // Where the outputs go (SPEC §3).
    let sub_path = if let Some(p) = annotations[SUBPATH].as_str() {
        p.to_owned()
    } else if let Some(u) = annotations[UNIQUE_NAME].as_str() {
        spec::unique_name_path(u).ok_or_else(|| format!("{u:?} is not a run name"))?
    } else {
        let meta = &original["metadata"];
        match meta["name"].as_str() {
            Some(name) => format!("{namespace}/{name}"),
            None => format!(
                "{namespace}/{}{}",
                meta["generateName"].as_str().expect("generateName"),
                request["uid"].as_str().expect("uid")
            ),
        }
    };
    let outputs_path = sel
        .outputs
        .map(|s| format!("{}/{sub_path}", s.path().trim_end_matches('/')));

    // The injected annotation (SPEC §4).
    let injected: Value = patched["metadata"]["annotations"][INJECTED]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or("no readable polyaxon.com/persistence-injected annotation")?;
    let want_injected = json!({
        "data": sel.data.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "outputs": sel.outputs.map(Store::name),
        "outputsPath": outputs_path,
    });
    if injected != want_injected {
        return Err(format!(
            "annotation {INJECTED} is {injected}, SPEC gives {want_injected}"
        ));
    }

    // Env values (SPEC §4).
    let mut data_paths = BTreeMap::new();
    let mut access_keys = BTreeMap::new();
    let mut secret_keys = BTreeMap::new();
    let mut gcs_key = None;
    let mut volume_stores = Vec::new();
    for store in &sel.data {
        data_paths.insert(store.name(), store.path());
        match store.backend() {
            Backend::Cloud {
                provider,
                bucket,
                secret,
                secret_key,
            } => {
                access_keys.insert(
                    bucket.clone(),
                    json!({"store": provider.as_str(), "secret_key": secret_key}),
                );
                secret_keys.insert(secret_key.clone(), secret.clone());
                if provider.as_str() == "gcs" && gcs_key.is_none() {
                    gcs_key = Some((secret.clone(), secret_key.clone()));
                }
            }
            Backend::Volume { .. } => volume_stores.push((*store, store.path().to_owned(), None)),
        }
    }
    if let (Some(store), Some(path)) = (sel.outputs, &outputs_path) {
        match store.backend() {
            Backend::Cloud {
                provider,
                secret,
                secret_key,
                ..
            } => {
                access_keys.insert(
                    path.clone(),
                    json!({"store": provider.as_str(), "secret_key": secret_key}),
                );
                secret_keys.insert(secret_key.clone(), secret.clone());
                if provider.as_str() == "gcs" {
                    gcs_key = Some((secret.clone(), secret_key.clone()));
                }
            }
            Backend::Volume { .. } => {
                volume_stores.push((store, path.clone(), Some(sub_path.clone())))
            }
        }
    }
    let mut want_env = BTreeMap::new();
    want_env.insert(
        DATA_PATHS.to_owned(),
        WantEnv::Exact(serde_json::to_string(&data_paths).expect("strings")),
    );
    if let Some(path) = &outputs_path {
        want_env.insert(OUTPUTS_PATH.to_owned(), WantEnv::Exact(path.clone()));
    }
    if !access_keys.is_empty() {
        want_env.insert(
            ACCESS_KEYS.to_owned(),
            WantEnv::SortedJson(json!(access_keys)),
        );
    }
    for (key, secret) in &secret_keys {
        want_env.insert(
            key.clone(),
            WantEnv::From(json!({"secretKeyRef": {"name": secret, "key": key}})),
        );
    }

    // Pod volumes (SPEC §4): one per volume store, named apart from the pod's
    // own, plus the GCS key file.
    let volumes: BTreeMap<String, Value> = patched["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["name"].as_str().expect("volume name").to_owned(),
                v.clone(),
            )
        })
        .collect();
    let own_volumes: BTreeSet<String> = original["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().expect("volume name").to_owned())
        .collect();
    let mut want_mounts = Vec::new();
    let mut ours = BTreeSet::new();
    for (store, path, sub) in &volume_stores {
        let Backend::Volume {
            source, read_only, ..
        } = store.backend()
        else {
            unreachable!("volume stores only")
        };
        let name = store.volume_name().to_owned();
        if own_volumes.contains(&name) {
            return Err(format!(
                "store {} reuses the pod's volume {name}",
                store.name()
            ));
        }
        let v = volumes
            .get(&name)
            .ok_or_else(|| format!("no pod volume {name} for store {}", store.name()))?;
        let source_ok = match source {
            Source::HostPath(p) => v["hostPath"]["path"] == json!(p),
            Source::Claim(c) => {
                v["persistentVolumeClaim"]["claimName"] == json!(c)
                    && v["persistentVolumeClaim"]["readOnly"]
                        .as_bool()
                        .unwrap_or(false)
                        == *read_only
            }
            Source::EmptyDir => v["emptyDir"].is_object(),
        };
        if !source_ok {
            return Err(format!(
                "pod volume {v} does not match store {}",
                store.name()
            ));
        }
        want_mounts.push((name.clone(), path.clone(), sub.clone(), *read_only));
        ours.insert(name);
    }
    let mut credentials_file = None;
    if let Some((secret, key)) = &gcs_key {
        let (name, v) = volumes
            .iter()
            .filter(|(n, _)| !own_volumes.contains(*n) && !ours.contains(*n))
            .find(|(_, v)| v["secret"]["secretName"] == json!(secret))
            .ok_or_else(|| format!("no volume for the GCS key {key} of secret {secret}"))?;
        if v["secret"]["items"] != json!([{"key": key, "path": key}]) {
            return Err(format!(
                "the GCS credentials volume {v} does not hold just {key}"
            ));
        }
        ours.insert(name.clone());
        credentials_file = Some((name.clone(), key.clone()));
    }
    let extra: Vec<&String> = volumes
        .keys()
        .filter(|n| !own_volumes.contains(*n) && !ours.contains(*n))
        .collect();
    if !extra.is_empty() {
        return Err(format!("unexpected pod volumes {extra:?}"));
    }

    // Each container.
    let lists = ["initContainers", "containers"];
    for list in lists {
        let before = original["spec"][list]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let after = patched["spec"][list]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if before.len() != after.len() {
            return Err(format!("spec.{list} changed length"));
        }
        for (was, now) in before.iter().zip(&after) {
            let name = was["name"].as_str().expect("container name");
            let targeted = sel.containers.as_ref().is_none_or(|c| c.contains(name));
            if !targeted {
                if was != now {
                    return Err(format!("container {name} is not targeted but changed"));
                }
                continue;
            }
            check_container(
                name,
                was,
                now,
                &want_env,
                &want_mounts,
                credentials_file.as_ref(),
            )?;
        }
    }
    Ok(())
}

fn check_container(
    name: &str,
    was: &Value,
    now: &Value,
    want_env: &BTreeMap<String, WantEnv>,
    want_mounts: &[(String, String, Option<String>, bool)],
    credentials_file: Option<&(String, String)>,
) -> Result<(), String> {
    let env = env_of(now);
    let own_env = env_of(was);
    for (var, want) in want_env {
        let got = env
            .get(var)
            .ok_or_else(|| format!("container {name} has no env {var}"))?;
        if !want.matches(got) {
            return Err(format!(
                "container {name}: env {var} is {got}, SPEC gives {want}"
            ));
        }
    }
    let have: Vec<&Value> = now["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let own_count = was["volumeMounts"].as_array().map_or(0, Vec::len);
    let mut ours = want_mounts.len();
    let own_credentials = own_env.get(GOOGLE_CREDENTIALS);
    match credentials_file {
        Some((volume, key)) => {
            // The key file is mounted read-only, even for a container that
            // keeps its own GOOGLE_APPLICATION_CREDENTIALS.
            ours += 1;
            let mount = have
                .iter()
                .find(|m| m["name"] == json!(volume))
                .ok_or_else(|| format!("container {name} does not mount the GCS key {key}"))?;
            if mount["readOnly"] != json!(true) || mount.get("subPath").is_some() {
                return Err(format!(
                    "container {name}: the GCS key mount {mount} is not read-only"
                ));
            }
            let dir = mount["mountPath"].as_str().unwrap_or_default();
            let want = match own_credentials {
                Some(own) => own.clone(),
                None => json!({"name": GOOGLE_CREDENTIALS, "value": format!("{dir}/{key}")}),
            };
            if env.get(GOOGLE_CREDENTIALS) != Some(&want) {
                return Err(format!(
                    "container {name}: {GOOGLE_CREDENTIALS} is {:?}, wanted {want}",
                    env.get(GOOGLE_CREDENTIALS)
                ));
            }
        }
        None => {
            if env.get(GOOGLE_CREDENTIALS) != own_credentials {
                return Err(format!(
                    "container {name}: {GOOGLE_CREDENTIALS} set with no GCS store selected"
                ));
            }
        }
    }
    let expected_vars: BTreeSet<&String> = own_env.keys().chain(want_env.keys()).collect();
    let extra: Vec<&String> = env
        .keys()
        .filter(|k| !expected_vars.contains(k) && k.as_str() != GOOGLE_CREDENTIALS)
        .collect();
    if !extra.is_empty() {
        return Err(format!("container {name}: unexpected env {extra:?}"));
    }
    if have.len() != own_count + ours {
        return Err(format!(
            "container {name}: {} mounts, wanted its {own_count} plus {ours}",
            have.len()
        ));
    }
    for (volume, path, sub, read_only) in want_mounts {
        let mut want = json!({"name": volume, "mountPath": path});
        if let Some(sub) = sub {
            want["subPath"] = plain(sub);
        }
        if *read_only {
            want["readOnly"] = json!(true);
        }
        if !have.contains(&&want) {
            return Err(format!("container {name} has no mount {want}"));
        }
    }
    Ok(())
}

/// The first JSON pointer at which two values differ.
fn first_difference(expected: &Value, actual: &Value, at: String) -> Option<String> {
    match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let escaped = k.replace('~', "~0").replace('/', "~1");
                first_difference(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    format!("{at}/{escaped}"),
                )
                .or_else(|| {
                    (a.contains_key(k) != b.contains_key(k))
                        .then(|| format!("{at}/{escaped} (present in one only)"))
                })
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{at}/{i}"))),
        _ if expected == actual => None,
        _ => {
            let mut s = String::new();
            let _ = write!(
                s,
                "{:?}: expected {expected}, got {actual}",
                if at.is_empty() { "/" } else { &at }
            );
            Some(s)
        }
    }
}

// --- checks that relate cases to one another ------------------------------

fn patch_of(name: &str) -> Value {
    let case = load_case(name);
    let reviewed = review(&case.config, &case.body).expect("the case is an AdmissionReview");
    match reviewed.decision {
        Decision::Patched(p) => serde_json::to_value(p).expect("a patch serialises"),
        other => panic!("{name}: not patched: {other:?}"),
    }
}

/// SPEC §5: a `dryRun` request gets exactly the answer of the real one.
#[test]
fn dry_run_gets_the_same_patch_as_the_real_create() {
    let dry = load_case("dry-run");
    assert_eq!(
        dry.request["request"]["dryRun"],
        json!(true),
        "the dry-run capture"
    );
    assert_eq!(patch_of("dry-run"), patch_of("defaults"));
}

/// Our annotation's key holds a `/`: its pointer must escape it as `~1`,
/// next to a pod annotation whose key holds both `/` and `~`.
#[test]
fn annotation_pointer_is_escaped() {
    let patch = patch_of("annotation-escaping");
    let paths: Vec<&str> = patch
        .as_array()
        .expect("a patch is an array")
        .iter()
        .filter_map(|op| op["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/metadata/annotations/polyaxon.com~1persistence-injected"),
        "{paths:?}"
    );
}

/// A pod with no annotations, volumes, mounts or env gets whole lists and
/// maps added (a missing parent is added before its child), not appends.
#[test]
fn bare_pod_gets_whole_lists() {
    let patch = patch_of("bare-pod");
    let paths: BTreeSet<&str> = patch
        .as_array()
        .expect("a patch is an array")
        .iter()
        .filter_map(|op| op["path"].as_str())
        .collect();
    let want = BTreeSet::from([
        "/metadata/annotations",
        "/spec/volumes",
        "/spec/containers/0/volumeMounts",
        "/spec/containers/0/env",
    ]);
    assert_eq!(paths, want);
}

/// The generateName pod has no name yet: its sub-path ends with the
/// admission uid (SPEC §3), and a replay of it keeps that path.
#[test]
fn generate_name_sub_path_uses_the_uid_and_is_kept_on_replay() {
    let case = load_case("generate-name");
    let reviewed = review(&case.config, &case.body).expect("reviewed");
    let Decision::Patched(patch) = reviewed.decision else {
        panic!("not patched: {:?}", reviewed.decision);
    };
    let text = serde_json::to_string(&patch).expect("serialises");
    assert!(
        text.contains("/outputs/1/team-a/gen-pod-99195365-b5d8-4d20-af43-592038a6f085"),
        "{text}"
    );
    let replay = load_case("replayed-injected");
    assert_ne!(
        replay.request["request"]["uid"], case.request["request"]["uid"],
        "the replay is a new admission"
    );
}

/// Regression: the API server *defaults* a pod after every webhook patch
/// (kube-apiserver's mutating dispatcher calls the object defaulter after
/// applying a patch) and when it reads one back, so on reinvocation, replay
/// or restore our hostPath volumes come back with `type: ""` and our Secret
/// volume with `defaultMode: 420`. SPEC §5 says admitting such a pod again
/// produces no patch; the webhook used to deny it as a volume conflict.
#[test]
fn readmitting_a_pod_defaulted_by_the_api_server_is_unchanged() {
    for name in ["replayed-injected", "data-gcs", "defaults"] {
        let mut case = load_case(name);
        let mut pod = case.request["request"]["object"].clone();
        if let Decision::Patched(patch) =
            review(&case.config, &case.body).expect("reviewed").decision
        {
            json_patch::patch(&mut pod, &patch).expect("the patch applies");
        }
        // What SetDefaults_HostPathVolumeSource and
        // SetDefaults_SecretVolumeSource add.
        for v in pod["spec"]["volumes"].as_array_mut().expect("volumes") {
            if let Some(host) = v.get_mut("hostPath") {
                host["type"] = json!("");
            }
            if let Some(secret) = v.get_mut("secret") {
                secret["defaultMode"] = json!(420);
            }
        }
        case.request["request"]["object"] = pod;
        let body = serde_json::to_vec(&case.request).expect("serialises");
        let reviewed = review(&case.config, &body).expect("reviewed");
        assert!(
            matches!(reviewed.decision, Decision::Unchanged(_)),
            "{name}: admitting the defaulted pod again gave {:?}",
            reviewed.decision
        );
    }
}
