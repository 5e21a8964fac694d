//! The Helm chart on a real kube-apiserver (`tests/cluster/kube-local`):
//! `helm install`, `helm upgrade` with a changed `persistence:` block (the
//! webhook reloads it: a pod created after the upgrade gets the new stores),
//! `helm rollback`, and `helm uninstall` leaving nothing of the release
//! behind, with `persistence-webhook check` reporting no failure on what
//! Helm installed.
//!
//! kube-local has no kubelet and no pod network, so, as in `e2e_check.rs`:
//! - the webhook runs on 127.0.0.1 and the chart registers it by URL
//!   (`webhook.url`, the chart's knob for tests and out-of-cluster
//!   webhooks), with the self-managed certificate mode given the
//!   certificate `certs` made for 127.0.0.1;
//! - the test plays the kubelet: it marks the Deployment's pods Ready
//!   through the status subresource, and copies the ConfigMap Helm wrote
//!   into the file the local webhook serves, as the kubelet syncs a
//!   ConfigMap volume (the webhook then reloads it by content, as in a pod).
//!
//! Needs `HELM` (`charts/tools/helm build`) and a cluster; ignored by
//! default, run by `.ci/run` with the other `e2e*` files.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/helm.rs"]
mod helm;

use std::path::Path;
use std::process::Command;

use cluster::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");
const NS: &str = helm::NAMESPACE;
const RELEASE: &str = helm::RELEASE;
const TEAM: &str = "helm-team";

/// The first `persistence:` block: a Polyaxon values file's, as it is.
const VALUES_V1: &str = r#"
persistence:
  data:
    data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
  outputs:
    outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
"#;

/// The upgrade: a second data store and another outputs store as the default.
const VALUES_V2: &str = r#"
persistence:
  data:
    data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
    data2: {mountPath: /data/2, hostPath: /mnt/data/2}
  outputs:
    outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
    outputs2: {mountPath: /outputs/2, hostPath: /mnt/outputs/2}
  defaultOutputs: outputs2
"#;

/// Uninstalls the release if a failed test left it, so a `Fail` webhook
/// whose process is gone does not block the other e2e files' pods.
struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm::helm(&["uninstall", RELEASE, "-n", NS, "--ignore-not-found"]);
    }
}

fn helm_ok(args: &[&str]) -> String {
    helm::helm_ok(args)
}

/// `helm install|upgrade` of the chart with the values file `values` and
/// `extra` (the certificate and URL of the local webhook); helm's output.
fn install(verb: &str, values: &Path, extra: &[String]) -> String {
    let chart = helm::chart();
    let mut args: Vec<&str> = vec![
        verb,
        RELEASE,
        chart.to_str().expect("utf-8"),
        "-n",
        NS,
        "-f",
        values.to_str().expect("utf-8"),
    ];
    if verb == "install" {
        args.push("--create-namespace");
    }
    args.extend(extra.iter().map(String::as_str));
    helm_ok(&args)
}

/// The kubelet's part: the ConfigMap's persistence.yaml into the file the
/// webhook reads (written aside and renamed, so the webhook never reads half).
fn sync_config_map(file: &Path) -> String {
    let text = kubectl_ok(
        &[
            "-n",
            NS,
            "get",
            "configmap",
            "persistence-webhook-config",
            "-o",
            "jsonpath={.data.persistence\\.yaml}",
        ],
        None,
    );
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, &text).expect("write config");
    std::fs::rename(&tmp, file).expect("rename config");
    text
}

/// (data stores, outputs store) a new pod in `TEAM` gets, by a server dry run.
fn stores_of_a_new_pod() -> (Vec<String>, String) {
    let pod = created(TEAM, &pod("helm-probe", json!({}), json!({})), DryRun::Yes);
    let got = injected(&pod).unwrap_or_else(|| panic!("not mutated: {pod}"));
    let data = got["data"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (data, got["outputs"].as_str().unwrap_or_default().to_owned())
}

/// `check --output json`: panics with the report unless nothing failed.
fn check_passes(when: &str) {
    let out = Command::new(BIN)
        .args(["check", "--output", "json", "-n", TEAM])
        .output()
        .expect("check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{when}: check --output json: {e}\n{stdout}"));
    let failed: Vec<String> = report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["checks"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["result"] == "failed")
        .map(|c| format!("{}: {} ({})", c["id"], c["title"], c["detail"]))
        .collect();
    assert!(
        failed.is_empty(),
        "{when}: check failed: {failed:#?}\n{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{when}: {stdout}");
    let passed: Vec<&str> = report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["checks"].as_array().into_iter().flatten())
        .filter(|c| c["result"] == "passed")
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in [
        "webhook-exists",
        "ca-bundle-verifies",
        "deployment-ready",
        "config-validates",
        "probe",
    ] {
        assert!(passed.contains(&id), "{when}: {id} did not pass\n{stdout}");
    }
    assert_eq!(report["success"], true, "{when}");
}

/// What a namespace holds, as `kind/name` (the kinds a release could leave).
fn left_in(ns: &str) -> Vec<String> {
    let out = kubectl_ok(
        &[
            "-n", ns, "get",
            "deployments,replicasets,pods,services,configmaps,secrets,serviceaccounts,poddisruptionbudgets,roles,rolebindings,leases",
            "-o", "name",
        ],
        None,
    );
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

/// Nothing from the other e2e files (they apply manifests/ with kubectl,
/// in the same namespace and names), which Helm would refuse to take over.
fn clean_slate() {
    let _ = helm::helm(&["uninstall", RELEASE, "-n", NS, "--ignore-not-found"]);
    for (kind, name) in [
        ("mutatingwebhookconfiguration", RELEASE),
        ("clusterrole", "persistence-webhook-certificates"),
        ("clusterrolebinding", "persistence-webhook-certificates"),
        ("namespace", NS),
    ] {
        kubectl_ok(
            &["delete", kind, name, "--ignore-not-found", "--wait=true"],
            None,
        );
    }
}

#[test]
#[ignore = "needs a real API server and HELM: run by .ci/run with kube-local"]
fn install_upgrade_rollback_uninstall() {
    clean_slate();
    let scratch = tempfile::tempdir().expect("tempdir");
    let certs = scratch.path().join("certs");
    certs_in(&certs);
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();
    let tls = vec![
        "--set-file".to_owned(),
        format!(
            "certificates.selfManaged.tlsCrt={}",
            path(&certs.join("tls.crt"))
        ),
        "--set-file".to_owned(),
        format!(
            "certificates.selfManaged.tlsKey={}",
            path(&certs.join("tls.key"))
        ),
        "--set-file".to_owned(),
        format!(
            "certificates.selfManaged.caBundle={}",
            path(&certs.join("ca-bundle.b64"))
        ),
    ];
    let (v1, v2) = (
        scratch.path().join("v1.yaml"),
        scratch.path().join("v2.yaml"),
    );
    std::fs::write(&v1, VALUES_V1).expect("v1");
    std::fs::write(&v2, VALUES_V2).expect("v2");

    // The webhook, as the pod would run it: the config file the ConfigMap
    // volume would hold (empty until Helm has written the ConfigMap), the
    // certificate the chart's Secret holds.
    let config = scratch.path().join("persistence.yaml");
    std::fs::write(&config, "persistence: {}\n").expect("config");
    let hook = common::Spawned::start(
        &[
            "--config",
            &path(&config),
            "--tls-cert",
            &path(&certs.join("tls.crt")),
            "--tls-key",
            &path(&certs.join("tls.key")),
            "--reload-interval",
            "100ms",
        ],
        "info",
    );
    let url = format!("webhook.url=https://127.0.0.1:{}/mutate", hook.addr.port());
    let mut tls_url = tls.clone();
    tls_url.extend(["--set".to_owned(), url]);

    // install
    let _release = Release;
    let out = install("install", &v1, &tls_url);
    assert!(
        out.contains("persistence-webhook check"),
        "NOTES.txt names the next command:\n{out}"
    );
    let written = sync_config_map(&config);
    assert!(
        written.contains("data1") && !written.contains("data2"),
        "{written}"
    );
    deployment_pods_ready(NS, RELEASE, true, 20);
    namespace(TEAM, true);
    common::eventually_blocking("the webhook serves the installed config", || {
        stores_of_a_new_pod() == (vec!["data1".to_owned()], "outputs1".to_owned())
    });
    check_passes("after helm install");

    // upgrade: a changed persistence block, reloaded without a restart
    install("upgrade", &v2, &tls_url);
    let written = sync_config_map(&config);
    assert!(
        written.contains("data2") && written.contains("defaultOutputs: outputs2"),
        "{written}"
    );
    common::eventually_blocking(
        "a pod created after the upgrade gets the new stores",
        || {
            stores_of_a_new_pod()
                == (
                    vec!["data1".to_owned(), "data2".to_owned()],
                    "outputs2".to_owned(),
                )
        },
    );
    check_passes("after helm upgrade");

    // rollback to the first revision: the first stores again
    helm_ok(&["rollback", RELEASE, "1", "-n", NS]);
    let written = sync_config_map(&config);
    assert!(!written.contains("data2"), "{written}");
    common::eventually_blocking(
        "a pod created after the rollback gets the first stores",
        || stores_of_a_new_pod() == (vec!["data1".to_owned()], "outputs1".to_owned()),
    );
    check_passes("after helm rollback");
    let history = helm_ok(&["history", RELEASE, "-n", NS, "-o", "json"]);
    let history: Value = serde_json::from_str(&history).expect("history JSON");
    assert_eq!(history.as_array().map(Vec::len), Some(3), "{history}");

    // uninstall: nothing of the release is left
    helm_ok(&["uninstall", RELEASE, "-n", NS, "--wait"]);
    for kind in [
        "mutatingwebhookconfigurations",
        "clusterroles",
        "clusterrolebindings",
    ] {
        let left = kubectl_ok(
            &[
                "get",
                kind,
                "-l",
                "app.kubernetes.io/instance=persistence-webhook",
                "-o",
                "name",
            ],
            None,
        );
        assert!(
            left.trim().is_empty(),
            "{kind} left after uninstall: {left}"
        );
    }
    // The pods go with their ReplicaSet (the garbage collector).
    let mut left = Vec::new();
    common::eventually_blocking(
        "the namespace holds only what Kubernetes puts in every namespace",
        || {
            left = left_in(NS);
            left == ["configmap/kube-root-ca.crt", "serviceaccount/default"]
        },
    );
    // What remains, and why: the namespace itself (made by --create-namespace;
    // Helm never deletes a namespace), with the ConfigMap kube-root-ca.crt and
    // ServiceAccount default that Kubernetes's controllers put in every one.
    println!(
        "left after helm uninstall: namespace/{NS}, {}",
        left.join(", ")
    );
    // A pod in the opted-in namespace is no longer sent to any webhook.
    let pod = created(
        TEAM,
        &pod("after-uninstall", json!({}), json!({})),
        DryRun::Yes,
    );
    assert!(injected(&pod).is_none(), "{pod}");
    drop(hook);
}
