//! `persistence-webhook mutate` as a user runs it: the example config and
//! pods under `examples/`, the kube-apiserver captures under
//! `tests/fixtures/`, and the exit statuses SPEC §6 gives (0 allowed,
//! 1 denied with the message on stderr, 2 usage, input or config error);
//! then `certs --renew` under a CA that is expired or ends soon.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::Engine as _;
use predicates::prelude::*;
use serde_json::{json, Value};

const CONFIG: &str = "examples/persistence.yaml";
const TRAINING: &str = "examples/pods/training.yaml";
const GENERATE_NAME_GCS: &str = "examples/pods/generate-name-gcs.yaml";
const INIT_SUBSET: &str = "examples/pods/init-subset.yaml";
const BAD_SELECTION: &str = "examples/pods/bad-selection.yaml";
const NATIVE_SIDECAR: &str = "examples/pods/native-sidecar.yaml";
const DEFAULT_UID: &str = "00000000-0000-0000-0000-000000000000";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `persistence-webhook mutate --config examples/persistence.yaml ARGS...`,
/// run from the repository root so that relative paths work as in the README.
fn mutate(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args(["mutate", "--config", CONFIG])
        .args(args);
    cmd
}

/// Runs `cmd`, requires exit 0 and an empty stderr, and returns stdout.
fn allowed(cmd: &mut Command) -> String {
    let out = cmd
        .assert()
        .success()
        .stderr("")
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).expect("stdout is UTF-8")
}

/// Runs `cmd`, requires exit 0 and exactly `warnings` on stderr (SPEC §8:
/// `mutate` prints the response's warnings), and returns stdout.
fn allowed_warned(cmd: &mut Command, warnings: &[&str]) -> String {
    let want: String = warnings.iter().map(|w| format!("Warning: {w}\n")).collect();
    let out = cmd
        .assert()
        .success()
        .stderr(want)
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out).expect("stdout is UTF-8")
}

/// The warning `examples/pods/init-subset.yaml` earns: its `containers:`
/// leaves the metrics sidecar without stores.
const METRICS_GETS_NONE: &str = "container metrics gets no stores: annotation polyaxon.com/persistence targets only the containers it names in containers:";

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("stdout is one YAML document")
}

fn json_out(text: &str) -> Value {
    serde_json::from_str(text).expect("stdout is JSON")
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == json!(name))?
        .get("value")?
        .as_str()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).expect("the example is readable")
}

// --- the three outputs ----------------------------------------------------

#[test]
fn output_pod_is_the_mutated_pod_as_yaml() {
    let pod = yaml(&allowed(&mut mutate(&["--pod", TRAINING])));
    assert_eq!(pod["metadata"]["name"], json!("train-resnet"));
    assert_eq!(pod["metadata"]["namespace"], json!("default"));
    let main = &pod["spec"]["containers"][0];
    assert_eq!(
        env_value(main, "POLYAXON_RUN_OUTPUTS_PATH"),
        Some("/outputs/1/acme/vision/experiments/42"),
        "the outputs path comes from polyaxon.com/unique-name"
    );
    assert_eq!(
        env_value(main, "POLYAXON_RUN_DATA_PATHS"),
        Some(r#"{"data-gcs":"gs://acme-datasets","data1":"/data/1"}"#)
    );
    assert_eq!(
        env_value(main, "GOOGLE_APPLICATION_CREDENTIALS"),
        Some("/var/run/secrets/polyaxon.com/gcs/gcs-key.json")
    );
    let mounts = main["volumeMounts"].as_array().expect("mounts were added");
    assert!(
        mounts.contains(&json!({
            "name": "pw-outputs1",
            "mountPath": "/outputs/1/acme/vision/experiments/42",
            "subPath": "acme/vision/experiments/42"
        })),
        "{mounts:?}"
    );
    let injected = pod["metadata"]["annotations"]["polyaxon.com/persistence-injected"]
        .as_str()
        .expect("the injected annotation");
    assert_eq!(
        json_out(injected),
        json!({"data": ["data-gcs", "data1"], "outputs": "outputs1",
               "outputsPath": "/outputs/1/acme/vision/experiments/42"})
    );
    // The manifest's own fields are all still there.
    assert_eq!(main["command"], json!(["python", "train.py"]));
}

#[test]
fn output_patch_is_a_json_patch_that_turns_the_manifest_into_the_pod_output() {
    let patch = json_out(&allowed(&mut mutate(&[
        "--pod", TRAINING, "--output", "patch",
    ])));
    let ops = patch.as_array().expect("the patch is a JSON array");
    assert!(!ops.is_empty());
    assert!(ops.iter().all(|op| op["op"] == json!("add")), "{patch}");

    // Applied to the manifest (with the namespace mutate fills in), the patch
    // gives exactly what --output pod prints.
    let mut manifest = yaml(&read(TRAINING));
    manifest["metadata"]["namespace"] = json!("default");
    let ops: json_patch::Patch = serde_json::from_value(patch).expect("a JSON Patch");
    json_patch::patch(&mut manifest, &ops).expect("the patch applies to the manifest");
    let pod = yaml(&allowed(&mut mutate(&["--pod", TRAINING])));
    assert_eq!(manifest, pod);
}

#[test]
fn output_review_has_a_base64_patch_and_echoes_the_uid() {
    let uid = "7b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
    let review = json_out(&allowed(&mut mutate(&[
        "--pod", TRAINING, "--output", "review", "--uid", uid,
    ])));
    assert_eq!(review["apiVersion"], json!("admission.k8s.io/v1"));
    assert_eq!(review["kind"], json!("AdmissionReview"));
    let response = &review["response"];
    assert_eq!(response["uid"], json!(uid));
    assert_eq!(response["allowed"], json!(true));
    assert_eq!(response["patchType"], json!("JSONPatch"));
    let encoded = response["patch"]
        .as_str()
        .expect("patch is a base64 string, not an array of bytes (kube-rs/kube#1781)");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("standard base64");
    let patch: Value = serde_json::from_slice(&decoded).expect("the patch is JSON");
    let printed = json_out(&allowed(&mut mutate(&[
        "--pod", TRAINING, "--output", "patch",
    ])));
    assert_eq!(patch, printed, "--output review and --output patch agree");
}

#[test]
fn output_is_deterministic() {
    for output in ["pod", "patch", "review"] {
        let run = || {
            mutate(&["--pod", GENERATE_NAME_GCS, "--output", output])
                .assert()
                .success()
                .get_output()
                .stdout
                .clone()
        };
        let first = run();
        assert!(!first.is_empty(), "--output {output} printed nothing");
        assert_eq!(first, run(), "--output {output} differs between runs");
    }
}

// --- inputs ----------------------------------------------------------------

#[test]
fn pod_from_stdin() {
    let from_file = allowed(&mut mutate(&["--pod", TRAINING, "--output", "patch"]));
    let from_stdin =
        allowed(mutate(&["--pod", "-", "--output", "patch"]).write_stdin(read(TRAINING)));
    assert_eq!(from_stdin, from_file);
}

#[test]
fn pod_as_json() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("training.json");
    let manifest = yaml(&read(TRAINING));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&manifest).expect("JSON"),
    )
    .expect("write the JSON pod");
    let path = path.to_str().expect("a UTF-8 path");
    let from_json = allowed(&mut mutate(&["--pod", path, "--output", "patch"]));
    let from_yaml = allowed(&mut mutate(&["--pod", TRAINING, "--output", "patch"]));
    assert_eq!(from_json, from_yaml);
}

/// An AdmissionReview captured from kube-apiserver 1.20 (a copy of
/// ../shared/fixtures/apiserver-1.20/pod-create-generate-name.json): the
/// answer is the one the golden test records for it.
#[test]
fn review_input_from_an_apiserver_capture() {
    let capture = "tests/fixtures/generate-name/review.json";
    let golden: Value = json_out(&read("tests/fixtures/generate-name/expected.json"));
    let run = |output: &str| {
        let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "mutate",
            "--config",
            "tests/fixtures/config.yaml",
            "--review",
            capture,
            "--output",
            output,
        ]);
        json_out(&allowed(&mut cmd))
    };
    let review = run("review");
    assert_eq!(
        review["response"]["uid"],
        json!("99195365-b5d8-4d20-af43-592038a6f085"),
        "the capture's uid"
    );
    assert_eq!(review, golden["response"]);
    assert_eq!(run("patch"), golden["patch"]);
}

#[test]
fn review_input_that_is_not_a_pod_create_passes_unchanged() {
    let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "mutate",
        "--config",
        "tests/fixtures/config.yaml",
        "--review",
        "tests/fixtures/not-a-pod/review.json",
        "--output",
        "patch",
    ]);
    assert_eq!(json_out(&allowed(&mut cmd)), json!([]));
}

#[test]
fn namespace_flag_for_a_pod_without_one() {
    let pod = yaml(&allowed_warned(
        &mut mutate(&["--pod", INIT_SUBSET, "--namespace", "team-a"]),
        &[METRICS_GETS_NONE],
    ));
    assert_eq!(pod["metadata"]["namespace"], json!("team-a"));
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(
        env_value(init, "POLYAXON_RUN_OUTPUTS_PATH"),
        Some("/outputs/host/team-a/prep-and-train"),
        "the sub-path is <namespace>/<pod name>"
    );
}

// --- the new examples -------------------------------------------------------

#[test]
fn generate_name_pod_writes_to_gcs_under_the_admission_uid() {
    let uid = "5e0f3c1a-2b4d-4e6f-8a9b-0c1d2e3f4a5b";
    let pod = yaml(&allowed(&mut mutate(&[
        "--pod",
        GENERATE_NAME_GCS,
        "--uid",
        uid,
    ])));
    let main = &pod["spec"]["containers"][0];
    let outputs = format!("gs://acme-outputs/default/train-{uid}");
    assert_eq!(
        env_value(main, "POLYAXON_RUN_OUTPUTS_PATH"),
        Some(outputs.as_str())
    );
    assert_eq!(
        env_value(main, "GOOGLE_APPLICATION_CREDENTIALS"),
        Some("/var/run/secrets/polyaxon.com/gcs/gcs-key.json"),
        "the outputs store's key"
    );
    let keys = json_out(env_value(main, "POLYSTORES_RUN_STORES_ACCESS_KEYS").expect("access keys"));
    assert_eq!(
        keys,
        json!({
            outputs: {"store": "gcs", "secret_key": "gcs-key.json"},
            "s3://acme-datasets": {"store": "s3", "secret_key": "s3-key.json"},
        })
    );
    // A bucket gets no pod volume: only the key file's.
    let volumes: Vec<&Value> = pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .collect();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert_eq!(volumes[0]["secret"]["secretName"], json!("gcs-secret"));
    // With the default uid the path still ends with it.
    let default = yaml(&allowed(&mut mutate(&["--pod", GENERATE_NAME_GCS])));
    assert_eq!(
        env_value(
            &default["spec"]["containers"][0],
            "POLYAXON_RUN_OUTPUTS_PATH"
        ),
        Some(format!("gs://acme-outputs/default/train-{DEFAULT_UID}").as_str())
    );
}

#[test]
fn containers_subset_leaves_the_sidecar_alone() {
    let pod = yaml(&allowed_warned(
        &mut mutate(&["--pod", INIT_SUBSET]),
        &[METRICS_GETS_NONE],
    ));
    let manifest = yaml(&read(INIT_SUBSET));
    let init = &pod["spec"]["initContainers"][0];
    let main = &pod["spec"]["containers"][0];
    let sidecar = &pod["spec"]["containers"][1];
    assert_eq!(sidecar["name"], json!("metrics"));
    assert_eq!(sidecar, &manifest["spec"]["containers"][1], "untouched");
    for c in [init, main] {
        assert_eq!(
            env_value(c, "POLYAXON_RUN_DATA_PATHS"),
            Some(r#"{"data2":"/data/2"}"#),
            "{}",
            c["name"]
        );
        assert!(
            c["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["mountPath"] == json!("/data/2"))),
            "{} mounts /data/2",
            c["name"]
        );
    }
}

/// A native sidecar (an init container with `restartPolicy: Always`) is an
/// init container to SPEC §3: named in `containers:` it gets exactly what
/// the same pod gives it without the restartPolicy, which it keeps with
/// its probe; the init container not named is left alone.
#[test]
fn a_native_sidecar_is_mutated_like_any_init_container() {
    const FETCH_GETS_NONE: &str = "container fetch gets no stores: annotation polyaxon.com/persistence targets only the containers it names in containers:";
    let sidecar = yaml(&allowed_warned(
        &mut mutate(&["--pod", NATIVE_SIDECAR, "--namespace", "ml"]),
        &[FETCH_GETS_NONE],
    ));
    let manifest = yaml(&read(NATIVE_SIDECAR));
    let uploader = &sidecar["spec"]["initContainers"][1];
    assert_eq!(uploader["name"], json!("uploader"));
    assert_eq!(uploader["restartPolicy"], json!("Always"));
    assert_eq!(
        uploader["startupProbe"],
        manifest["spec"]["initContainers"][1]["startupProbe"]
    );
    assert_eq!(
        env_value(uploader, "POLYAXON_RUN_OUTPUTS_PATH"),
        Some("/outputs/host/ml/train-and-upload")
    );
    assert_eq!(
        &sidecar["spec"]["initContainers"][0], &manifest["spec"]["initContainers"][0],
        "fetch is not named: untouched"
    );
    // The same pod with a plain init container: the same pod out, but the
    // restartPolicy.
    let mut plain = manifest.clone();
    if let Some(c) = plain["spec"]["initContainers"][1].as_object_mut() {
        c.remove("restartPolicy");
    }
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), serde_json::to_string(&plain).expect("JSON")).expect("pod");
    let path = file.path().to_str().expect("UTF-8");
    let mut out = yaml(&allowed_warned(
        &mut mutate(&["--pod", path, "--namespace", "ml"]),
        &[FETCH_GETS_NONE],
    ));
    out["spec"]["initContainers"][1]["restartPolicy"] = json!("Always");
    assert_eq!(out, sidecar);
    // And the patch touches the sidecar by its index, as any init container.
    let patch = json_out(&allowed_warned(
        &mut mutate(&[
            "--pod",
            NATIVE_SIDECAR,
            "--namespace",
            "ml",
            "--output",
            "patch",
        ]),
        &[FETCH_GETS_NONE],
    ));
    let paths: Vec<&str> = patch
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|op| op["path"].as_str())
        .filter(|p| p.starts_with("/spec/initContainers/"))
        .collect();
    assert!(
        !paths.is_empty()
            && paths
                .iter()
                .all(|p| p.starts_with("/spec/initContainers/1/")),
        "{paths:?}"
    );
}

// --- exit statuses ----------------------------------------------------------

#[test]
fn denial_exits_1_with_the_message_on_stderr() {
    for output in ["pod", "patch"] {
        mutate(&["--pod", BAD_SELECTION, "--output", output])
            .assert()
            .code(1)
            .stdout("")
            .stderr(
                predicate::str::contains("polyaxon.com/persistence")
                    .and(predicate::str::contains("\"imagenet\""))
                    .and(predicate::str::contains("data1, data2")),
            );
    }
}

#[test]
fn denial_with_output_review_prints_the_refusal() {
    let out = mutate(&["--pod", BAD_SELECTION, "--output", "review"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("polyaxon.com/persistence"))
        .get_output()
        .stdout
        .clone();
    let review: Value = serde_json::from_slice(&out).expect("the response is printed");
    assert_eq!(review["response"]["allowed"], json!(false));
    assert!(review["response"].get("patch").is_none());
    assert!(review["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("\"imagenet\"")));
}

// --- bounds ---------------------------------------------------------------

#[test]
fn bound_flags_deny_as_the_server_would() {
    // The training pod has one container: with at most 2 items it is denied,
    // naming the numbers and the flag; the env var sets the same bound.
    mutate(&["--pod", TRAINING, "--max-injected-items", "2"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::starts_with("denied: the patch would add ").and(
                predicate::str::contains("over the limit of 2 items (--max-injected-items)"),
            ),
        );
    mutate(&["--pod", TRAINING])
        .env("PERSISTENCE_WEBHOOK_MAX_PATCH_BYTES", "100")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "over the limit of 100 bytes (--max-patch-bytes)",
        ));
    allowed(&mut mutate(&[
        "--pod",
        TRAINING,
        "--max-injected-items",
        "1000",
    ]));
}

// --- exit 2: usage, input and config errors (SPEC §6) -----------------------

/// One invocation that must exit 2 with nothing on stdout and a stderr that
/// names what is wrong.
struct Exit2 {
    /// What the case is about (printed when it fails).
    what: &'static str,
    /// Files to write into a temporary directory first: (name, content).
    files: &'static [(&'static str, &'static str)],
    /// `mutate` arguments after `--config`; `{dir}` is the temporary directory.
    args: &'static [&'static str],
    /// `--config` value instead of the example config (`{dir}` expanded).
    config: Option<&'static str>,
    /// Every one must appear on stderr.
    stderr: &'static [&'static str],
}

const EXIT_2: &[Exit2] = &[
    Exit2 {
        what: "a missing config file is named",
        files: &[],
        args: &["--pod", TRAINING],
        config: Some("no/such/persistence.yaml"),
        stderr: &["no/such/persistence.yaml"],
    },
    Exit2 {
        what: "an invalid config names the file, the store and the field",
        files: &[(
            "persistence.yaml",
            "data:\n  data1: {mountPath: data/1, hostPath: /mnt/data}\n",
        )],
        args: &["--pod", TRAINING],
        config: Some("{dir}/persistence.yaml"),
        stderr: &["data.data1.mountPath", "persistence.yaml"],
    },
    Exit2 {
        what: "neither --pod nor --review is a usage error",
        files: &[],
        args: &[],
        config: None,
        stderr: &["--pod", "--review", "Usage"],
    },
    Exit2 {
        what: "--pod and --review together is a usage error",
        files: &[],
        args: &[
            "--pod",
            TRAINING,
            "--review",
            "tests/fixtures/defaults/review.json",
        ],
        config: None,
        stderr: &["cannot be used with"],
    },
    Exit2 {
        what: "an unparseable pod file is named",
        files: &[("broken-pod.yaml", "metadata: {name: [unclosed\n")],
        args: &["--pod", "{dir}/broken-pod.yaml"],
        config: None,
        stderr: &["broken-pod.yaml"],
    },
    Exit2 {
        what: "a missing pod file is named",
        files: &[],
        args: &["--pod", "examples/pods/no-such-pod.yaml"],
        config: None,
        stderr: &["no-such-pod.yaml"],
    },
    Exit2 {
        what: "a pod given as --review names the file and what was expected",
        files: &[],
        args: &["--review", TRAINING],
        config: None,
        stderr: &["training.yaml", "AdmissionReview"],
    },
    // Regression: a manifest that is YAML but not a Pod (`containers` is a
    // string) is an input error, exit 2, by SPEC §6 and the `mutate` help; it
    // used to be reported as a denial, exit 1.
    Exit2 {
        what: "a YAML manifest that is not a Pod is an input error",
        files: &[(
            "not-a-pod.yaml",
            "metadata: {name: p}\nspec: {containers: main}\n",
        )],
        args: &["--pod", "{dir}/not-a-pod.yaml"],
        config: None,
        stderr: &["not-a-pod.yaml"],
    },
    Exit2 {
        what: "-n contradicting the manifest's namespace names both",
        files: &[("pod.yaml", TRAINING_IN_TEAM_A)],
        args: &["--pod", "{dir}/pod.yaml", "-n", "team-b"],
        config: None,
        stderr: &["\"team-a\"", "\"team-b\""],
    },
    Exit2 {
        what: "--max-patch-bytes 0 is a usage error",
        files: &[],
        args: &["--pod", TRAINING, "--max-patch-bytes", "0"],
        config: None,
        stderr: &["--max-patch-bytes", "0 is not in 1..="],
    },
    Exit2 {
        what: "--max-injected-items 0 is a usage error",
        files: &[],
        args: &["--pod", TRAINING, "--max-injected-items", "0"],
        config: None,
        stderr: &["--max-injected-items", "0 is not in 1..="],
    },
];

/// Stands for examples/pods/training.yaml with `namespace: team-a` added to
/// its metadata (made when the case runs).
const TRAINING_IN_TEAM_A: &str = "<training.yaml in team-a>";

fn file_content(content: &str) -> String {
    if content != TRAINING_IN_TEAM_A {
        return content.to_owned();
    }
    let training = read(TRAINING);
    assert!(
        training.contains("  name: train-resnet\n"),
        "{TRAINING} changed"
    );
    training.replace(
        "  name: train-resnet\n",
        "  name: train-resnet\n  namespace: team-a\n",
    )
}

#[test]
fn usage_input_and_config_errors_exit_2_naming_the_problem() {
    let mut failures = Vec::new();
    for case in EXIT_2 {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let dir_text = dir.path().to_str().expect("UTF-8").to_owned();
        let expand = |s: &str| s.replace("{dir}", &dir_text);
        for (name, content) in case.files {
            std::fs::write(dir.path().join(name), file_content(content))
                .expect("write the case's file");
        }
        let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
            .args(["mutate", "--config"])
            .arg(expand(case.config.unwrap_or(CONFIG)))
            .args(case.args.iter().map(|a| expand(a)));
        let out = cmd.output().expect("the binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut wrong = Vec::new();
        if out.status.code() != Some(2) {
            wrong.push(format!("exit {:?}, wanted 2", out.status.code()));
        }
        if !out.stdout.is_empty() {
            wrong.push(format!(
                "stdout not empty: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        for want in case.stderr {
            if !stderr.contains(want) {
                wrong.push(format!("stderr does not mention {want:?}"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\nstderr: {stderr}",
                case.what,
                wrong.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// --- certs --renew ----------------------------------------------------------

const DAY: std::time::Duration = std::time::Duration::from_secs(86400);

/// A `--out` directory holding only `ca.crt` and `ca.key`, of a CA issued at
/// `at` for `days`.
fn ca_dir(at: std::time::SystemTime, days: u64) -> tempfile::TempDir {
    let req = persistence_webhook::certs::CertRequest {
        service: "pw".into(),
        namespace: "sys".into(),
        dns: vec![],
        ips: vec![],
        validity: DAY * u32::try_from(days).expect("days"),
    };
    let ca = persistence_webhook::certs::issue(&req, at).expect("CA");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.crt"), ca.ca_cert_pem).expect("ca.crt");
    std::fs::write(dir.path().join("ca.key"), ca.ca_key_pem).expect("ca.key");
    dir
}

fn certs(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
    cmd.arg("certs").args(args);
    cmd
}

#[test]
fn certs_renew_under_an_expired_ca_exits_2_and_writes_nothing() {
    let now = std::time::SystemTime::now();
    let cases = [
        (ca_dir(now - 3 * DAY, 1), "the CA expired at "),
        (ca_dir(now + 3 * DAY, 1), "the CA is not valid before "),
    ];
    for (dir, want) in cases {
        let out = dir.path().to_str().expect("utf-8 path");
        certs(&["--renew", "--out", out])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(want))
            .stderr(predicate::str::contains("ca.crt"))
            .stderr(predicate::str::contains("`certs --force` for a new CA"));
        assert!(
            !dir.path().join("tls.crt").exists(),
            "{want}: no serving certificate is written"
        );
    }
}

#[test]
fn certs_renew_warns_when_the_ca_makes_the_certificate_much_shorter_lived() {
    let now = std::time::SystemTime::now();
    // (CA days left, --validity, what stderr says, what it must not say)
    let cases = [
        (
            10,
            "30days",
            "warning: the new serving certificate is valid for only",
            "note:",
        ),
        (
            5,
            "6days",
            "warning: the new serving certificate is valid for only",
            "note:",
        ),
        (
            300,
            "365days",
            "note: the new serving certificate is valid for",
            "warning:",
        ),
        (
            300,
            "30days",
            "wrote",
            "the new serving certificate is valid",
        ),
    ];
    for (ca_days, validity, want, not) in cases {
        let dir = ca_dir(now, ca_days);
        let out = dir.path().to_str().expect("utf-8 path");
        let assert = certs(&["--renew", "--validity", validity, "--out", out])
            .assert()
            .success()
            .stderr(predicate::str::contains(want))
            .stderr(predicate::str::contains(not).not());
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        if want.starts_with("warning") {
            assert!(stderr.contains("`certs --force`"), "{stderr}");
        }
        assert!(dir.path().join("tls.crt").exists(), "{validity}: {stderr}");
    }
}

/// The book's example config for today's clients
/// (docs/src/reference/sdk-stores.md): a pod with no selection gets every
/// data store, the S3 outputs store's SDK variables, and the keyless GCS
/// store without any credential.
#[test]
fn the_sdk_example_config_gives_the_sdk_variables() {
    let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args([
            "mutate",
            "--config",
            "examples/persistence-sdk.yaml",
            "--pod",
            "-",
            "--namespace",
            "team-a",
        ])
        .write_stdin("apiVersion: v1\nkind: Pod\nmetadata: {name: train}\nspec:\n  containers: [{name: main, image: python:3.12}]\n");
    let pod = yaml(&allowed(&mut cmd));
    let main = &pod["spec"]["containers"][0];
    assert_eq!(
        env_value(main, "AWS_ENDPOINT_URL_S3"),
        Some("http://minio.storage.svc:9000")
    );
    assert_eq!(env_value(main, "AWS_REGION"), Some("us-east-1"));
    assert_eq!(
        env_value(main, "POLYAXON_RUN_OUTPUTS_PATH"),
        Some("s3://runs/team-a/train")
    );
    let key_id = main["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == "AWS_ACCESS_KEY_ID"))
        .map(|e| e["valueFrom"]["secretKeyRef"].clone());
    assert_eq!(
        key_id,
        Some(json!({"name": "minio-creds", "key": "access-key-id"}))
    );
    let keys: Value = serde_json::from_str(
        env_value(main, "POLYSTORES_RUN_STORES_ACCESS_KEYS").expect("access keys"),
    )
    .expect("JSON");
    assert!(keys.get("gs://public-datasets").is_none(), "{keys}");
    assert!(keys.get("s3://datasets").is_some(), "{keys}");
    assert_eq!(env_value(main, "GOOGLE_APPLICATION_CREDENTIALS"), None);
}

/// SPEC §8: `mutate` prints the response's warnings on stderr, one
/// `Warning: ...` line each as kubectl does, and still exits 0; in a stream
/// each line names the object it is about.
#[test]
fn mutate_prints_the_responses_warnings_on_stderr() {
    let pod = r#"
apiVersion: v1
kind: Pod
metadata:
  name: own-key
  annotations:
    polyaxon.com/persistence: "{data: [datasets], outputs: runs}"
spec:
  containers:
    - name: main
      image: python:3.11
      env:
        - {name: AWS_ACCESS_KEY_ID, value: mine}
"#;
    let dir = tempfile::tempdir().expect("a scratch directory");
    let file = dir.path().join("pod.yaml");
    std::fs::write(&file, pod).expect("the pod is written");
    let sdk = repo("examples/persistence-sdk.yaml");
    let run = |input: &Path| {
        let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
        cmd.args(["mutate", "--config"])
            .arg(&sdk)
            .arg("--pod")
            .arg(input);
        cmd.assert().success()
    };
    let out = run(&file);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(
        stderr.lines().count(),
        1,
        "one warning line, nothing else:\n{stderr}"
    );
    assert!(
        stderr.starts_with("Warning: container \"main\" sets AWS_ACCESS_KEY_ID itself"),
        "{stderr}"
    );
    // The pod keeps its own key: the warning is not an error.
    let stored = yaml(&String::from_utf8_lossy(&out.get_output().stdout));
    assert_eq!(
        env_value(&stored["spec"]["containers"][0], "AWS_ACCESS_KEY_ID"),
        Some("mine")
    );

    // Two objects: the warning names the one it is about.
    let stream = dir.path().join("stream.yaml");
    std::fs::write(
        &stream,
        format!("{pod}---\n{}", pod.replace("own-key", "second")),
    )
    .expect("the stream is written");
    let out = run(&stream);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains("own-key") && lines[0].contains(": Warning: container \"main\""),
        "{stderr}"
    );
    assert!(lines[1].contains("second"), "{stderr}");
}
