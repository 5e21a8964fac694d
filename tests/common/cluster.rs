//! The real API server from the e2e tests' side: `kubectl` against the
//! cluster in `KUBECONFIG` (kube-local in CI), the webhook binary serving on
//! loopback with certificates from `certs`, and its registration. Included by
//! each `e2e*` test file with `#[path = "common/cluster.rs"] mod cluster;`
//! after `mod common;`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::Spawned;

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");

/// The small config several e2e files serve: a read-only hostPath data
/// store, a GCS data store with a key, and a hostPath outputs store as the
/// default.
pub const SMALL_CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
  data-gcs: {store: gcs, bucket: "gs://data-bucket", secret: gcs-secret, secretKey: gcs-key.json}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
defaultOutputs: outputs1
"#;

pub fn kubectl_path() -> PathBuf {
    match std::env::var_os("KUBEBUILDER_ASSETS") {
        Some(dir) if Path::new(&dir).join("kubectl").exists() => Path::new(&dir).join("kubectl"),
        _ => PathBuf::from("kubectl"),
    }
}

/// Runs kubectl; returns (success, stdout, stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: start an API server first (eval \"$(kube-local start)\")"
    );
    let mut cmd = Command::new(kubectl_path());
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("kubectl finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A token for ServiceAccount `ns/name` from the TokenRequest API
/// (`kubectl create token`): since Kubernetes 1.24 no token Secret is made.
pub fn service_account_token(ns: &str, name: &str) -> String {
    let out = kubectl_ok(&["-n", ns, "create", "token", name, "--duration=1h"], None);
    let token = out.trim().to_owned();
    assert!(
        !token.is_empty(),
        "kubectl create token {ns}/{name} printed nothing"
    );
    token
}

/// A kubeconfig for ServiceAccount `ns/name` (a token from the
/// TokenRequest API) against the cluster of `KUBECONFIG`, written in
/// `dir`; returns its path.
pub fn kubeconfig_as(dir: &Path, ns: &str, name: &str) -> String {
    let token = service_account_token(ns, name);
    let admin: Value = serde_json::from_str(&kubectl_ok(
        &["config", "view", "--raw", "--minify", "-o", "json"],
        None,
    ))
    .expect("kubeconfig JSON");
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": name}}],
        "current-context": name
    });
    let file = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&file, kubeconfig.to_string()).expect("kubeconfig");
    file.to_str().expect("utf-8").to_owned()
}

pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl(args, stdin);
    assert!(ok, "kubectl {args:?} failed:\n{err}\n{out}");
    out
}

/// The kubelet's part for the webhook's Deployment `ns/deployment`: its pods
/// (made by the real controllers, at least two) get `Ready` (or not) through
/// the status subresource, with pod IPs from `10.0.0.<first_ip>` on, then the
/// controllers' count shows in the Deployment's `readyReplicas`.
pub fn deployment_pods_ready(ns: &str, deployment: &str, ready: bool, first_ip: usize) {
    let mut names: Vec<String> = Vec::new();
    crate::common::eventually_blocking(
        "the replicaset controller creates the webhook's pods",
        || {
            let out = kubectl_ok(
                &[
                    "-n",
                    ns,
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/name=persistence-webhook",
                    "-o",
                    "json",
                ],
                None,
            );
            let pods: Value = serde_json::from_str(&out).expect("JSON");
            names = pods["items"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            names.len() >= 2
        },
    );
    let flag = if ready { "True" } else { "False" };
    for (i, pod) in names.iter().enumerate() {
        let ip = format!("10.0.0.{}", first_ip + i);
        let status = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "Ready", "status": flag},
                {"type": "ContainersReady", "status": flag}
            ]
        }});
        kubectl_ok(
            &[
                "-n",
                ns,
                "patch",
                "pod",
                pod,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ],
            None,
        );
    }
    let want = if ready {
        names.len().to_string()
    } else {
        String::new()
    };
    crate::common::eventually_blocking("the Deployment counts the pods' readiness", || {
        kubectl_ok(
            &[
                "-n",
                ns,
                "get",
                "deployment",
                deployment,
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            None,
        ) == want
    });
}

/// Whether `kubectl create` only asks the API server (`--dry-run=server`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    /// `--dry-run=server`
    Yes,
    /// stored
    No,
}

/// `kubectl -n NS create -o json -f -` of `manifest`: (success, stdout, stderr).
pub fn create(ns: &str, manifest: &str, dry_run: DryRun) -> (bool, String, String) {
    let mut args = vec!["-n", ns, "create", "-o", "json", "-f", "-"];
    if dry_run == DryRun::Yes {
        args.push("--dry-run=server");
    }
    kubectl(&args, Some(manifest))
}

/// The same, which must succeed: the pod as the API server returned it.
pub fn created(ns: &str, manifest: &str, dry_run: DryRun) -> Value {
    let (ok, out, err) = create(ns, manifest, dry_run);
    assert!(ok, "kubectl create failed:\n{err}\n{out}");
    serde_json::from_str(&out).expect("kubectl -o json prints JSON")
}

/// Runs `certs --out DIR` for 127.0.0.1 and localhost (`tls.crt`,
/// `tls.key` in `dir`); returns the caBundle it prints.
pub fn certs_in(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(dir)
        .args(["--ip", "127.0.0.1", "--dns", "localhost"])
        .output()
        .expect("certs runs");
    assert!(
        out.status.success(),
        "certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// The webhook binary serving on 127.0.0.1 with certificates from `certs`.
pub struct Webhook {
    pub server: Spawned,
    pub port: u16,
    pub ca_bundle: String,
    _dir: tempfile::TempDir,
}

impl Webhook {
    pub fn start(config_text: &str) -> Webhook {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        let ca_bundle = certs_in(&certs);
        let config = dir.path().join("persistence.yaml");
        std::fs::write(&config, config_text).expect("config");
        let path = |p: PathBuf| p.to_str().expect("utf-8").to_owned();
        let (config, cert, key) = (
            path(config),
            path(certs.join("tls.crt")),
            path(certs.join("tls.key")),
        );
        let server = Spawned::start(
            &["--config", &config, "--tls-cert", &cert, "--tls-key", &key],
            "info",
        );
        Webhook {
            port: server.addr.port(),
            server,
            ca_bundle,
            _dir: dir,
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        // The webhook's own account of a failed test.
        if std::thread::panicking() {
            for line in self.server.logs.try_iter() {
                eprintln!("webhook: {line}");
            }
        }
    }
}

/// The `matchConditions` the manifests ship (`manifests/base`), as JSON.
pub fn shipped_match_conditions() -> Value {
    let yaml = include_str!("../../manifests/base/mutatingwebhookconfiguration.yaml");
    let config: Value = serde_yaml::from_str(yaml).expect("the manifest is YAML");
    let conditions = config["webhooks"][0]["matchConditions"].clone();
    assert!(conditions.is_array(), "the manifest ships matchConditions");
    conditions
}

/// The registration the manifests use, pointed at a URL instead of a Service.
pub fn registration(name: &str, url: &str, ca_bundle: &str) -> String {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "persistence.polyaxon.com",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": {"matchExpressions": [
                {"key": "polyaxon.com/persistence-injection", "operator": "In", "values": ["enabled"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "persistence-webhook"]}
            ]},
            "objectSelector": {"matchExpressions": [
                {"key": "polyaxon.com/persistence-injection", "operator": "NotIn", "values": ["disabled"]}
            ]},
            "matchConditions": shipped_match_conditions(),
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
            "clientConfig": {"url": url, "caBundle": ca_bundle}
        }]
    })
    .to_string()
}

/// A fresh namespace `name` (labelled for the webhook when `enabled`). One
/// left by an earlier run is deleted first, its pods forced out: with no
/// kubelet, a pod bound to a node (the mirror pods' `nodeName`) stays
/// Terminating for ever and so would the namespace. The wait is bounded.
pub fn namespace(name: &str, enabled: bool) {
    let _ = kubectl(
        &[
            "-n",
            name,
            "delete",
            "pods",
            "--all",
            "--force",
            "--grace-period=0",
            "--ignore-not-found",
        ],
        None,
    );
    let (deleted, out, err) = kubectl(
        &[
            "delete",
            "namespace",
            name,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ],
        None,
    );
    assert!(
        deleted,
        "namespace {name} from an earlier run is not gone after 120s; see what holds it: kubectl get namespace {name} -o yaml\n{err}\n{out}"
    );
    kubectl_ok(&["create", "namespace", name], None);
    if enabled {
        kubectl_ok(
            &[
                "label",
                "namespace",
                name,
                "polyaxon.com/persistence-injection=enabled",
            ],
            None,
        );
    }
    crate::common::eventually_blocking("the namespace's default ServiceAccount", || {
        kubectl(&["-n", name, "get", "serviceaccount", "default"], None).0
    });
}

pub fn pod(name: &str, annotations: Value, extra_spec: Value) -> String {
    let mut spec = json!({"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    let mut meta = json!({"annotations": annotations});
    if let Some(prefix) = name.strip_suffix('*') {
        meta["generateName"] = json!(prefix);
    } else {
        meta["name"] = json!(name);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}).to_string()
}

pub fn env_of(pod: &Value, list: &str, i: usize) -> Vec<(String, Value)> {
    pod["spec"][list][i]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e.clone()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn env_value(pod: &Value, list: &str, i: usize, name: &str) -> Option<String> {
    env_of(pod, list, i)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, e)| e["value"].as_str().map(str::to_owned))
}

pub fn count_env(pod: &Value, list: &str, i: usize, name: &str) -> usize {
    env_of(pod, list, i)
        .iter()
        .filter(|(n, _)| n == name)
        .count()
}

pub fn volume_names(pod: &Value) -> Vec<String> {
    pod["spec"]["volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn injected(pod: &Value) -> Option<Value> {
    pod["metadata"]["annotations"]["polyaxon.com/persistence-injected"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// The webhook serving `config_text`, registered as `name`, once the API
/// server calls it: a server dry run of a pod in `ns` (a namespace already
/// created with injection enabled) comes back mutated. Keep both guards
/// alive for the test; the registration is deleted first when they drop.
pub fn serve_registered(config_text: &str, name: &'static str, ns: &str) -> (Webhook, Registered) {
    let hook = Webhook::start(config_text);
    let url = format!("https://127.0.0.1:{}/mutate", hook.port);
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&registration(name, &url, &hook.ca_bundle)),
    );
    let registered = Registered(name);
    // The API server picks the registration up asynchronously.
    crate::common::eventually_blocking("the webhook mutates a server dry run", || {
        let (ok, out, _) = create(ns, &pod("probe", json!({}), json!({})), DryRun::Yes);
        ok && out.contains("POLYAXON_RUN_DATA_PATHS")
    });
    (hook, registered)
}

/// Deletes the MutatingWebhookConfiguration it names when dropped.
pub struct Registered(pub &'static str);

impl Drop for Registered {
    fn drop(&mut self) {
        unregister(self.0);
    }
}

/// Deletes the MutatingWebhookConfiguration `name`, if there is one.
pub fn unregister(name: &str) {
    let _ = kubectl(
        &[
            "delete",
            "mutatingwebhookconfiguration",
            name,
            "--ignore-not-found",
        ],
        None,
    );
}

/// What `persistence-webhook policy --config <config_text> <args>` prints:
/// the policies and their bindings, one YAML stream.
pub fn policy_objects(config_text: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("persistence.yaml");
    std::fs::write(&config, config_text).expect("config");
    let out = Command::new(BIN)
        .arg("policy")
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("policy runs");
    assert!(
        out.status.success(),
        "policy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Deletes the two policies and two bindings named `name`, if present.
pub fn delete_policies(name: &str) {
    for kind in [
        "mutatingadmissionpolicybinding",
        "validatingadmissionpolicybinding",
        "mutatingadmissionpolicy",
        "validatingadmissionpolicy",
    ] {
        let _ = kubectl(&["delete", kind, name, "--ignore-not-found"], None);
    }
}

/// The policies and bindings named `.0`, deleted when dropped.
pub struct PoliciesApplied(pub &'static str);

impl Drop for PoliciesApplied {
    fn drop(&mut self) {
        delete_policies(self.0);
    }
}

/// A pod the API server stored, as text comparable with another creation
/// of the same manifest: its uid, timestamps, resourceVersion and
/// managedFields out, a generated name as `<generated>`, every UUID as
/// `<uid>` (the admission uid in a generateName pod's sub-path) and the
/// token volume's random suffix as `<random>`.
pub fn comparable(mut pod: Value) -> String {
    if let Some(meta) = pod["metadata"].as_object_mut() {
        for k in [
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "managedFields",
        ] {
            meta.remove(k);
        }
        if meta.contains_key("generateName") {
            meta.insert("name".into(), json!("<generated>"));
        }
    }
    let text = serde_json::to_string_pretty(&pod).expect("JSON");
    without_token_volume(&without_uuids(&text))
}

/// The ServiceAccount token volume's random suffix (`kube-api-access-x7k2p`).
fn without_token_volume(text: &str) -> String {
    let marker = "kube-api-access-";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at + marker.len()]);
        rest = &rest[at + marker.len()..];
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        out.push_str("<random>");
        rest = &rest[n..];
    }
    out.push_str(rest);
    out
}

/// Every UUID (the admission uid in a generateName pod's sub-path differs
/// between the two requests) replaced by `<uid>`.
fn without_uuids(text: &str) -> String {
    let b = text.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    let mut out = String::new();
    let mut i = 0;
    'scan: while i < b.len() {
        let mut j = i;
        for (n, len) in shape.iter().enumerate() {
            if n > 0 {
                if b.get(j) != Some(&b'-') {
                    out.push(b[i] as char);
                    i += 1;
                    continue 'scan;
                }
                j += 1;
            }
            for _ in 0..*len {
                if !b.get(j).is_some_and(|c| c.is_ascii_hexdigit()) {
                    // Not a UUID here: copy one char (UTF-8 safe: copy the
                    // whole char starting at i).
                    let ch = text[i..].chars().next().expect("a char at i");
                    out.push(ch);
                    i += ch.len_utf8();
                    continue 'scan;
                }
                j += 1;
            }
        }
        out.push_str("<uid>");
        i = j;
    }
    out
}
