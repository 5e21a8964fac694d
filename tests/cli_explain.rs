//! `persistence-webhook explain` offline, as a user runs it (SPEC §8): the
//! example config and pods given on stdin, the account as text and as
//! JSON. Each "why" a store is got or left out, the sub-path rule, what a
//! container keeps and the warning about it, a `containers:` subset, and a
//! denial with its reason and field. `explain` exits 0 whenever it could
//! explain, denial included; 2 on a usage, input or config error.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{json, Value};

const CONFIG: &str = "examples/persistence.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `explain --config CONFIG --pod - ARGS...` with `pod` on stdin:
/// (exit code, stdout, stderr).
fn explain_with(config: &Path, pod: &Value, args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("persistence-webhook")
        .expect("the binary is built")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args(["explain", "--config"])
        .arg(config)
        .args(["--pod", "-"])
        .args(args)
        .write_stdin(pod.to_string())
        .output()
        .expect("explain runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("UTF-8"),
        String::from_utf8(out.stderr).expect("UTF-8"),
    )
}

/// The text account; exit 0 and nothing on stderr.
fn text(pod: &Value) -> String {
    let (code, out, err) = explain_with(&repo(CONFIG), pod, &[]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    out
}

/// The JSON account; exit 0 and nothing on stderr.
fn json_of(config: &Path, pod: &Value, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = explain_with(config, pod, &all);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    serde_json::from_str(&out).expect("--output json prints JSON")
}

fn account(pod: &Value) -> Value {
    json_of(&repo(CONFIG), pod, &[])
}

/// A pod `train` in namespace `ml` with these annotations and containers.
fn pod(annotations: Value, containers: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "train", "namespace": "ml", "annotations": annotations},
        "spec": {"containers": containers}
    })
}

fn main_only() -> Value {
    json!([{"name": "main", "image": "busybox"}])
}

fn selection(s: &str) -> Value {
    json!({"polyaxon.com/persistence": s})
}

fn left_out<'a>(a: &'a Value, store: &str) -> Option<&'a str> {
    a["left_out"]
        .as_array()?
        .iter()
        .find(|l| l["store"] == store)?["why"]
        .as_str()
}

#[test]
fn stores_asked_for_and_those_left_out_say_why() {
    let p = pod(
        selection("data: [data1, data-gcs]\noutputs: outputs-host"),
        main_only(),
    );
    let a = account(&p);
    assert_eq!(a["pod"], "ml/train");
    assert_eq!(a["outcome"], "patched");
    assert_eq!(a["reason"], Value::Null);
    assert_eq!(
        a["data"],
        json!([
            {"store": "data-gcs", "path": "gs://acme-datasets", "why": "asked for"},
            {"store": "data1", "path": "/data/1", "why": "asked for"}
        ])
    );
    assert_eq!(a["outputs"]["store"], "outputs-host");
    assert_eq!(a["outputs"]["why"], "asked for");
    assert_eq!(a["outputs"]["path"], "/outputs/host/ml/train");
    // Left out: granted but not asked for; limited to another namespace;
    // the other outputs stores, since a run gets one.
    assert_eq!(left_out(&a, "data2"), Some("not asked for"));
    assert_eq!(left_out(&a, "scratch"), Some("not asked for"));
    assert_eq!(
        left_out(&a, "team-a-data"),
        Some("not granted to namespace ml")
    );
    assert_eq!(
        left_out(&a, "outputs1"),
        Some("a run gets one outputs store")
    );
    assert_eq!(
        left_out(&a, "data1"),
        None,
        "a store it gets is not left out"
    );
    assert_eq!(a["left_out_more"], 0);
    // The audit annotations the response carries.
    assert_eq!(a["audit_annotations"]["outputs"], "outputs-host");
    assert_eq!(
        a["audit_annotations"]["outputs-path"],
        "/outputs/host/ml/train"
    );
    assert_eq!(a["warnings"], json!([]));

    let t = text(&p);
    assert!(t.starts_with("pod ml/train: patched\n"), "{t}");
    for line in [
        "  data data1 at /data/1 (asked for)",
        "  data data-gcs at gs://acme-datasets (asked for)",
        "  outputs outputs-host at /outputs/host/ml/train (asked for)",
        "\nleft out:\n",
        "  data team-a-data: not granted to namespace ml",
        "  data data2: not asked for",
        "\ncontainers:\n  main:\n",
        "    mount /data/1 (volume pw-data1, read-only; data store \"data1\")",
    ] {
        assert!(t.contains(line), "missing {line:?} in:\n{t}");
    }
    assert!(
        !t.contains("warnings:"),
        "the ordinary path warns of nothing:\n{t}"
    );
}

#[test]
fn all_data_by_default_and_default_outputs() {
    let a = account(&pod(json!({}), main_only()));
    assert_eq!(a["outcome"], "patched");
    let data: Vec<&str> = a["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| {
            assert_eq!(d["why"], "all data by default", "{d}");
            d["store"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(
        data,
        [
            "data-azure",
            "data-gcs",
            "data-s3",
            "data1",
            "data2",
            "scratch"
        ]
    );
    assert_eq!(
        left_out(&a, "team-a-data"),
        Some("not granted to namespace ml")
    );
    assert_eq!(a["outputs"]["store"], "outputs1");
    assert_eq!(a["outputs"]["why"], "defaultOutputs");

    // In team-a, the namespace's own store comes too.
    let mut p = pod(json!({}), main_only());
    p["metadata"]["namespace"] = json!("team-a");
    let a = account(&p);
    assert!(
        a["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["store"] == "team-a-data")),
        "{a:#}"
    );
}

#[test]
fn first_outputs_store_by_name_without_default_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("persistence.yaml");
    std::fs::write(
        &config,
        "outputs:\n  zeta: {mountPath: /outputs/z, hostPath: /mnt/z}\n  alpha: {mountPath: /outputs/a, hostPath: /mnt/a}\n",
    )
    .expect("config");
    let a = json_of(&config, &pod(json!({}), main_only()), &[]);
    assert_eq!(a["outputs"]["store"], "alpha");
    assert_eq!(a["outputs"]["why"], "first available by name");
    assert_eq!(left_out(&a, "zeta"), Some("a run gets one outputs store"));
    assert_eq!(a["data"], json!([]));
}

#[test]
fn the_sub_path_rule_is_named() {
    // The pod's namespace and name.
    let a = account(&pod(json!({}), main_only()));
    assert_eq!(a["outputs"]["sub_path"], "ml/train");
    assert_eq!(
        a["outputs"]["sub_path_rule"],
        "the pod's <namespace>/<name> (no sub-path annotation given)"
    );
    // The sub-path annotation.
    let a = account(&pod(
        json!({"polyaxon.com/outputs-subpath": "runs/42"}),
        main_only(),
    ));
    assert_eq!(a["outputs"]["sub_path"], "runs/42");
    assert_eq!(a["outputs"]["path"], "/outputs/1/runs/42");
    assert_eq!(
        a["outputs"]["sub_path_rule"],
        "annotation polyaxon.com/outputs-subpath"
    );
    // generateName: the admission uid, given with --uid.
    let mut p = pod(json!({}), main_only());
    p["metadata"] = json!({"generateName": "run-", "namespace": "ml"});
    let uid = "0b7d8b7e-1f6a-4c55-9a52-000000000042";
    let a = json_of(&repo(CONFIG), &p, &["--uid", uid]);
    assert_eq!(a["pod"], "ml/run-*");
    assert_eq!(a["outputs"]["sub_path"], format!("ml/run-{uid}"));
    assert!(
        a["outputs"]["sub_path_rule"]
            .as_str()
            .is_some_and(|r| r.contains("<generateName><uid>")),
        "{a:#}"
    );
    // Polyaxon's run name, from a pod file.
    let out = Command::cargo_bin("persistence-webhook")
        .expect("the binary is built")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args(["explain", "--config", CONFIG, "--output", "json"])
        .args(["--pod", "examples/pods/training.yaml"])
        .output()
        .expect("explain runs");
    assert_eq!(out.status.code(), Some(0));
    let a: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(a["outputs"]["sub_path"], "acme/vision/experiments/42");
    assert_eq!(
        a["outputs"]["sub_path_rule"],
        "annotation polyaxon.com/unique-name"
    );
    let t = text(&pod(
        json!({"polyaxon.com/outputs-subpath": "runs/42"}),
        main_only(),
    ));
    assert!(
        t.contains("    sub-path runs/42 from annotation polyaxon.com/outputs-subpath\n"),
        "{t}"
    );
}

#[test]
fn a_container_keeping_its_own_sdk_variable_is_told_and_warned_of() {
    let containers = json!([{
        "name": "main", "image": "busybox",
        "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/secret/own.json"}]
    }]);
    let p = pod(selection("data: [data-gcs]"), containers);
    let a = account(&p);
    assert_eq!(a["outcome"], "patched");
    let main = &a["containers"][0];
    assert_eq!(main["keeps_own"], json!(["GOOGLE_APPLICATION_CREDENTIALS"]));
    assert_eq!(main["left_out"], json!(["GOOGLE_APPLICATION_CREDENTIALS"]));
    // It receives the rest, not the variable it keeps.
    let env = main["env"].as_array().expect("env");
    assert!(
        env.contains(&json!("POLYSTORES_RUN_STORES_ACCESS_KEYS"))
            && !env.contains(&json!("GOOGLE_APPLICATION_CREDENTIALS")),
        "{env:?}"
    );
    assert_eq!(
        a["warnings"],
        json!(["container \"main\" sets GOOGLE_APPLICATION_CREDENTIALS itself and keeps its own: the webhook left out GOOGLE_APPLICATION_CREDENTIALS"])
    );
    let t = text(&p);
    assert!(
        t.contains("    keeps its own GOOGLE_APPLICATION_CREDENTIALS; does not get GOOGLE_APPLICATION_CREDENTIALS\n"),
        "{t}"
    );
    assert!(t.contains("\nwarnings:\n  container \"main\" sets"), "{t}");
    assert!(!t.contains("/secret/own.json"), "never a value:\n{t}");
}

#[test]
fn a_containers_subset_leaves_the_others_without_stores() {
    let containers = json!([
        {"name": "main", "image": "busybox"},
        {"name": "sidecar", "image": "busybox"}
    ]);
    let p = pod(selection("data: [data1]\ncontainers: [main]"), containers);
    let a = account(&p);
    assert_eq!(a["outcome"], "patched");
    assert_eq!(a["containers"][0]["name"], "main");
    assert_eq!(a["containers"][0]["targeted"], true);
    assert!(a["containers"][0]["mounts"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(a["containers"][1]["name"], "sidecar");
    assert_eq!(a["containers"][1]["targeted"], false);
    assert_eq!(a["containers"][1]["mounts"], json!([]));
    assert_eq!(a["containers"][1]["env"], json!([]));
    let warnings = a["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.starts_with("container sidecar gets no stores")),
        "{warnings:?}"
    );
    let t = text(&p);
    assert!(
        t.contains("  sidecar: no stores (not named in containers:)\n"),
        "{t}"
    );
}

#[test]
fn a_denial_is_explained_with_its_reason_and_field() {
    let p = pod(selection("data: [nope]"), main_only());
    let a = account(&p);
    assert_eq!(a["outcome"], "denied");
    assert_eq!(a["reason"], "unknown-store");
    assert_eq!(a["field"], "metadata.annotations[polyaxon.com/persistence]");
    assert!(
        a["message"].as_str().is_some_and(|m| m.contains("nope")),
        "{a:#}"
    );
    assert_eq!(a["data"], json!([]));
    assert_eq!(a["audit_annotations"], json!({}));
    let t = text(&p);
    assert!(
        t.starts_with("pod ml/train: denied (unknown-store)\n"),
        "{t}"
    );
    assert!(
        t.contains("  field: metadata.annotations[polyaxon.com/persistence]\n"),
        "{t}"
    );

    // A store limited to another namespace.
    let a = account(&pod(selection("data: [team-a-data]"), main_only()));
    assert_eq!(a["outcome"], "denied");
    assert_eq!(a["reason"], "store-not-in-namespace");

    // An env var of ours set to another value: the container's field.
    let containers = json!([{
        "name": "main", "image": "busybox",
        "env": [{"name": "POLYAXON_RUN_OUTPUTS_PATH", "value": "/elsewhere"}]
    }]);
    let a = account(&pod(json!({}), containers));
    assert_eq!(a["reason"], "env-conflict");
    assert_eq!(
        a["field"],
        "spec.containers[0].env[POLYAXON_RUN_OUTPUTS_PATH]"
    );
}

#[test]
fn skips_are_explained_too() {
    let mut p = pod(json!({}), main_only());
    p["metadata"]["labels"] = json!({"polyaxon.com/persistence-injection": "disabled"});
    let a = account(&p);
    assert_eq!(a["outcome"], "unchanged");
    assert_eq!(a["reason"], "opted-out");
    assert_eq!(a["left_out"], json!([]));
    assert!(text(&p).starts_with("pod ml/train: unchanged (opted-out)\n"));
}

#[test]
fn input_errors_exit_2() {
    let run = |args: &[&str], stdin: &str| {
        Command::cargo_bin("persistence-webhook")
            .expect("the binary is built")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
            .args(["explain", "--config", CONFIG])
            .args(args)
            .write_stdin(stdin.to_owned())
            .output()
            .expect("explain runs")
    };
    // Neither a file nor NAMESPACE/NAME.
    let out = run(&["--pod", "no-such-pod.yaml"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read --pod no-such-pod.yaml"), "{err}");
    // Two pods.
    let two = "{\"kind\": \"Pod\", \"metadata\": {\"name\": \"a\"}}\n---\n{\"kind\": \"Pod\", \"metadata\": {\"name\": \"b\"}}\n";
    let out = run(&["--pod", "-"], two);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("explain takes one Pod"));
    // A live name against another --namespace.
    let out = run(&["--pod", "ml/train", "--namespace", "other"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--pod ml/train is in namespace ml, not --namespace other"),
        "{err}"
    );
}

#[test]
fn a_live_pod_without_a_reachable_cluster_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    // An API server nobody listens on.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .expect("kubeconfig");
    let out = Command::cargo_bin("persistence-webhook")
        .expect("the binary is built")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args([
            "explain",
            "--config",
            CONFIG,
            "--pod",
            "ml/train",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .output()
        .expect("explain runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the API server to read pod ml/train"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// `--config` rules: a pod file or a review is explained offline and needs
/// it (no cluster is read, so there is no installed config to fall back
/// on); a live pod does not (it reads the installed one), and a `--config`
/// given for a live pod is read first, before any cluster.
#[test]
fn config_is_required_offline_and_optional_for_a_live_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    // An API server nobody listens on.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:9\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .expect("kubeconfig");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "data:\n  d1: {mountPath: relative, hostPath: /x}\n").expect("bad config");
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
            .arg("explain")
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .write_stdin(pod(json!({}), main_only()).to_string());
        if let Some(config) = env {
            cmd.env("PERSISTENCE_WEBHOOK_CONFIG", config);
        }
        let out = cmd.output().expect("explain runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let offline =
        "--config FILE is required to explain a pod file or a review (offline, no cluster is read)";
    let bad = bad.to_str().expect("UTF-8");
    /// (why, args, PERSISTENCE_WEBHOOK_CONFIG, exit code, stderr fragment)
    type Case<'a> = (&'a str, &'a [&'a str], Option<&'a str>, i32, &'a str);
    let cases: &[Case] = &[
        (
            "a pod file",
            &["--pod", "examples/pods/training.yaml"],
            None,
            2,
            offline,
        ),
        ("a pod on stdin", &["--pod", "-"], None, 2, offline),
        (
            "a review",
            &["--review", "tests/fixtures/bare-pod/review.json"],
            None,
            2,
            offline,
        ),
        (
            "a live pod reads the installed config from the cluster",
            &["--pod", "ml/train"],
            None,
            2,
            "cannot reach the API server to read pod ml/train",
        ),
        (
            "a bad --config for a live pod fails before the cluster",
            &["--pod", "ml/train", "--config", bad],
            None,
            2,
            "data.d1.mountPath",
        ),
        (
            "PERSISTENCE_WEBHOOK_CONFIG stands for --config",
            &["--pod", "-"],
            Some(CONFIG),
            0,
            "",
        ),
    ];
    for (why, args, env, code, fragment) in cases {
        let (got, out, err) = run(args, *env);
        assert_eq!(got, *code, "{why}: {err}{out}");
        assert!(err.contains(fragment), "{why}: {err}");
        if *code == 2 {
            assert!(out.is_empty(), "{why}: {out}");
        }
    }
    // The help says where the config comes from.
    let help = Command::cargo_bin("persistence-webhook")
        .expect("the binary is built")
        .args(["explain", "--help"])
        .output()
        .expect("explain --help runs");
    let help = String::from_utf8_lossy(&help.stdout);
    for fragment in [
        "installed config",
        "--webhook-namespace",
        "Required for a pod file",
    ] {
        assert!(help.contains(fragment), "{fragment}: {help}");
    }
}
