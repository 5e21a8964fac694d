//! End to end: what `mutate` predicts for a workload's pod template is what
//! the pods its controller creates really get from the webhook behind a real
//! kube-apiserver (SPEC §6), and a Job's pods write to `<namespace>/<job>`
//! (SPEC §3 rule 3). kube-local runs the Job and Deployment controllers, so
//! the pods are created with `generateName` and owner references as on a
//! real cluster; they stay Pending (no scheduler).
//!
//! Ignored by default; `.ci/run` runs every `e2e*` file with `--ignored`.
//! Without a reachable API server it FAILS, loudly: it never skips.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::time::Instant;

use assert_cmd::Command;
use cluster::*;
use serde::Deserialize;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");
const NS: &str = "pw-e2e-workloads";

const CONFIG: &str = SMALL_CONFIG;

fn manifests() -> String {
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "train", "namespace": NS},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": {"polyaxon.com/persistence": "data: [data1, data-gcs]\noutputs: outputs1"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                 "env": [{"name": "EPOCHS", "value": "10"}]}]}}}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"initContainers": [{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}],
                "containers": [{"name": "server", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
                "volumes": [{"name": "cache", "emptyDir": {}}]}}}});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": NS}, "data": {"resume": "yes"}});
    // JSON values one after another, as kubectl reads them (it reads YAML
    // as YAML 1.1, where a plain `yes` would be a boolean).
    [job, cm, deployment]
        .iter()
        .map(|d| format!("{d:#}\n"))
        .collect()
}

/// `mutate` on the manifests: its output, and the predicted objects in order.
fn predicted(config: &std::path::Path, manifests: &str) -> (String, Vec<Value>) {
    let out = Command::new(BIN)
        .args(["mutate", "--config"])
        .arg(config)
        .args(["-f", "-"])
        .write_stdin(manifests)
        .output()
        .expect("mutate runs");
    assert!(
        out.status.success(),
        "mutate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .collect();
    (text, docs)
}

/// The first pod carrying `label`, once its controller has created it.
fn controller_pod(label: &str) -> Value {
    let mut found = Value::Null;
    common::eventually_blocking(
        &format!("the controller creates a pod with {label}"),
        || {
            let (ok, out, _) = kubectl(&["-n", NS, "get", "pods", "-l", label, "-o", "json"], None);
            if !ok {
                return false;
            }
            let list: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            match list["items"].get(0) {
                Some(pod) => {
                    found = pod.clone();
                    true
                }
                None => false,
            }
        },
    );
    found
}

/// Whether every field of `want` is in `got` with the same value (lists of
/// the same length, element by element): the API server adds defaults.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(g, w)| contains(g, w))
        }
        _ => got == want,
    }
}

/// The pod's spec without the ServiceAccount token the API server adds
/// before the webhook runs (a volume and a mount in every container).
fn without_token(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let token = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mut token_volumes = Vec::new();
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec[list].as_array_mut() {
            for c in cs {
                if let Some(m) = c["volumeMounts"].as_array_mut() {
                    token_volumes.extend(
                        m.iter()
                            .filter(|m| m["mountPath"] == token)
                            .map(|m| m["name"].clone()),
                    );
                    m.retain(|m| m["mountPath"] != token);
                }
            }
        }
    }
    if let Some(v) = spec["volumes"].as_array_mut() {
        v.retain(|v| !token_volumes.contains(&v["name"]));
    }
    spec
}

/// `text` with every `<ns>/<prefix><suffix>` written `<ns>/<prefix>*`: the
/// generated part of a generateName pod's default sub-path.
fn suffix_masked(text: &str, prefix: &str) -> String {
    let needle = format!("{NS}/{prefix}");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        out.push_str(&rest[..at + needle.len()]);
        out.push('*');
        rest = rest[at + needle.len()..]
            .trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '-');
    }
    out.push_str(rest);
    out
}

/// Checks that `pod` got what `mutate` predicted for `template`.
fn check_prediction(what: &str, pod: &Value, template: &Value, mask: Option<&str>) {
    let mask = |v: &Value| -> Value {
        let text = v.to_string();
        let text = match mask {
            Some(prefix) => suffix_masked(&text, prefix),
            None => text,
        };
        serde_json::from_str(&text).expect("still JSON")
    };
    let (got_spec, want_spec) = (mask(&without_token(&pod["spec"])), mask(&template["spec"]));
    for list in ["initContainers", "containers", "volumes"] {
        assert!(
            contains(&got_spec[list], &want_spec[list]),
            "{what}: spec.{list} differs from mutate's prediction\n got: {}\nwant: {}",
            got_spec[list],
            want_spec[list]
        );
    }
    let (got_ann, want_ann) = (
        mask(&pod["metadata"]["annotations"]),
        mask(&template["metadata"]["annotations"]),
    );
    assert_eq!(got_ann, want_ann, "{what}: annotations");
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn pods_created_by_controllers_get_what_mutate_predicts_for_their_templates() {
    let started = Instant::now();
    namespace(NS, true);
    let (_hook, _registered) = serve_registered(CONFIG, "persistence-webhook-e2e-workloads", NS);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("persistence.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let manifests = manifests();
    let (stream, predicted) = predicted(&config, &manifests);
    assert_eq!(predicted.len(), 3, "Job, ConfigMap, Deployment");
    assert_eq!(
        predicted[1]["data"]["resume"], "yes",
        "the ConfigMap passes"
    );
    // kubectl (a YAML 1.1 reader) takes mutate's stream as written.
    let accepted = kubectl_ok(
        &[
            "-n",
            NS,
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(&stream),
    );
    assert!(accepted.contains(r#""resume": "yes""#), "{accepted}");

    kubectl_ok(&["create", "-f", "-"], Some(&manifests));

    // The Job's pod: rule 3 gives <namespace>/<job name>, exactly as predicted.
    let job_pod = controller_pod("job-name=train");
    assert_eq!(job_pod["metadata"]["generateName"], "train-", "{job_pod}");
    assert_eq!(
        env_value(&job_pod, "containers", 0, "POLYAXON_RUN_OUTPUTS_PATH").as_deref(),
        Some("/outputs/1/pw-e2e-workloads/train"),
        "a Job's pods write to <namespace>/<job name>"
    );
    check_prediction(
        "Job train",
        &job_pod,
        &predicted[0]["spec"]["template"],
        None,
    );

    // The Deployment's pod: generateName web-<hash>-, so its default
    // sub-path ends with a suffix only the cluster knows.
    let web_pod = controller_pod("app=web");
    let generate = web_pod["metadata"]["generateName"]
        .as_str()
        .expect("a generateName pod");
    assert!(generate.starts_with("web-"), "{generate}");
    let path =
        env_value(&web_pod, "containers", 0, "POLYAXON_RUN_OUTPUTS_PATH").expect("an outputs path");
    assert!(
        path.starts_with(&format!("/outputs/1/{NS}/{generate}")),
        "{path}"
    );
    check_prediction(
        "Deployment web",
        &web_pod,
        &predicted[2]["spec"]["template"],
        Some("web-"),
    );

    eprintln!("e2e workloads: {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn masking_keeps_everything_but_the_generated_suffix() {
    let text = format!(
        r#"{{"p":"/o/{NS}/web-5d8f-abc-123","s":"{NS}/web-xxxxxxxxxx-000/x","n":"{NS}/train"}}"#
    );
    assert_eq!(
        suffix_masked(&text, "web-"),
        format!(r#"{{"p":"/o/{NS}/web-*","s":"{NS}/web-*/x","n":"{NS}/train"}}"#)
    );
    assert!(contains(
        &json!({"a": 1, "b": [{"c": 2, "d": 3}]}),
        &json!({"b": [{"c": 2}]})
    ));
    assert!(!contains(
        &json!({"b": [{"c": 2}, {"c": 3}]}),
        &json!({"b": [{"c": 2}]})
    ));
}
