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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use persistence_webhook::config::Role;
use persistence_webhook::k8s::Pod;
use persistence_webhook::review::{review, Decision, Skip};
use persistence_webhook::Config;
use serde_json::{json, Value};

#[path = "../core/tests/model/describe.rs"]
mod describe;
#[path = "../core/tests/model/spec.rs"]
mod spec;
use describe::describe;

use spec::ANN_SELECTION as SELECTION;

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
    ("keyless", Want::Patched),
    ("sdk-azure-account-key", Want::Patched),
    ("sdk-azure-connection-string", Want::Patched),
    ("sdk-gcs-endpoint", Want::Patched),
    ("sdk-own-variables-kept", Want::Patched),
    ("sdk-s3-endpoint", Want::Patched),
    ("sdk-s3-outputs-gcs-data", Want::Patched),
    ("sdk-two-s3-stores", Want::Patched),
    ("volume-name-taken", Want::Patched),
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
    ("apiserver-1.36-defaults", Want::Patched),
    ("apiserver-1.36-native-sidecar", Want::Patched),
    ("dry-run", Want::Patched),
    ("explicit-data-outputs", Want::Patched),
    ("generate-name", Want::Patched),
    ("init-containers", Want::Patched),
    ("job-pod", Want::Patched),
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
    spec::check_envelope(
        &case.request["apiVersion"],
        &case.request["request"]["uid"],
        &response,
    )?;
    let object = case.request["request"]["object"].clone();

    let (patch, pod) = match (want, &reviewed.decision) {
        (Want::Patched, Decision::Patched(typed)) => {
            // The wire form, and only adds where SPEC §4 puts things.
            let patch = spec::wire_patch(&response)?;
            let typed = serde_json::to_value(typed).map_err(|e| e.to_string())?;
            if typed != patch {
                return Err("the response's patch is not the decision's patch".into());
            }
            let patched = spec::apply(&object, &patch)?;
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
            spec::check_unchanged(&response)?;
            (Value::Null, object)
        }
        (Want::Denied(fragments), Decision::Denied(denial)) => {
            let message = denial.to_string();
            spec::check_refused(&response, &message)?;
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

/// The run's selection as SPEC §3 defines it, from the pod's annotations.
fn selected(case: &Case, original: &Value) -> Result<spec::Selection, String> {
    let request = &case.request["request"];
    let namespace = request["namespace"].as_str().expect("request.namespace");
    let annotations = &original["metadata"]["annotations"];
    let config = &case.config;
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
        None => config
            .available(Role::Data, namespace)
            .map(describe)
            .collect(),
        Some(list) => {
            let set: BTreeSet<String> = list.into_iter().collect();
            set.iter()
                .map(|n| describe(config.store(n).expect("a known store")))
                .collect()
        }
    };
    let outputs = match raw.get("outputs").and_then(|v| v.as_str()) {
        None => config.default_outputs(namespace),
        Some(name) => config.store(name),
    };
    let outputs = match outputs {
        None => None,
        Some(store) => {
            let uid = request["uid"].as_str().expect("uid");
            let sub = spec::sub_path(annotations, namespace, &original["metadata"], uid)
                .ok_or_else(|| format!("no sub-path for {annotations}"))?;
            Some((describe(store), sub))
        }
    };
    Ok(spec::Selection {
        data,
        outputs,
        containers: names("containers").map(|l| l.into_iter().collect()),
    })
}

/// SPEC §3-§5 for a patched pod: the one model in core/tests/model/spec.rs,
/// fed with the case's config and the pod's own annotations (not with the
/// webhook's code).
fn check_spec(case: &Case, original: &Value, patched: &Value) -> Result<(), String> {
    let want = spec::expect(&selected(case, original)?);
    spec::check_patched_pod(original, patched, &want)
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
            json_patch::patch(&mut pod, patch.patch()).expect("the patch applies");
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
