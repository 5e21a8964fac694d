//! `persistence-webhook check` against a real kube-apiserver (from
//! `tests/cluster/kube-local`): a healthy install reports no failure, and each broken
//! install fails exactly the check that names its cause, with its hint.
//!
//! The install is the real `manifests/base`, rendered by `kubectl
//! kustomize`, with what kube-local cannot run stood in for:
//! - the webhook runs on 127.0.0.1 (the API server there has no pod
//!   network), so the configuration calls it by URL, with the caBundle of
//!   the certificates `certs` made for it; the serving Secret holds that
//!   certificate, as the self-managed overlay's would;
//! - kube-local has no kubelet: the Deployment's pods are created by the
//!   real deployment and replicaset controllers, and the test plays the
//!   kubelet by writing their status (`Ready`, a pod IP) through the status
//!   subresource; the controllers then count them in the Deployment's
//!   `readyReplicas`, as on a real cluster. There is no endpoints
//!   controller either, so the Service-registration test writes the
//!   Endpoints object by hand;
//! - PersistentVolumeClaims have no binder and no pvc-protection
//!   controller: the test writes `phase: Bound` and takes the finalizer off.
//!
//! Ignored by default; `.ci/run` runs every `e2e*` file with `--ignored
//! --test-threads=1`. Without an API server they fail loudly.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cluster::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");
const NS: &str = "persistence-webhook";
const NAME: &str = "persistence-webhook";

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
  data2: {mountPath: /data/2, existingClaim: data-2-pvc}
  data-gcs: {store: gcs, bucket: "gs://data-bucket", secret: gcs-secret, secretKey: gcs-key.json}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
  outputs-s3:
    store: s3
    bucket: "s3://outputs"
    endpoint: "http://minio.storage:9000"
    secret: s3-secret
    secretKey: s3-key.json
    accessKeyIdKey: aws-id
    secretAccessKeyKey: aws-secret
defaultOutputs: outputs1
"#;

/// Certificates from `certs` in a scratch directory.
struct Pki {
    dir: tempfile::TempDir,
    ca_bundle: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_bundle = certs_in(dir.path());
        Pki { dir, ca_bundle }
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8")
            .to_owned()
    }
}

/// The install: the webhook process, its registration and the manifests.
struct Install {
    /// First, so the registration goes before the webhook stops: a stopped
    /// webhook with failurePolicy Fail would block the other e2e files'
    /// pods in labelled namespaces.
    _registered: Registered,
    pki: Pki,
    hook: Option<common::Spawned>,
    _config: tempfile::TempDir,
}

impl Drop for Install {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(hook) = &self.hook {
                for line in hook.logs.try_iter() {
                    eprintln!("webhook: {line}");
                }
            }
        }
    }
}

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// The manifests of `dir` (`base`, or an overlay) as kube-local takes
/// them, registered by `url`.
fn rendered(dir: &str, config: &str, url: &str, ca_bundle: &str) -> String {
    let base = manifests().join(dir);
    let text = kubectl_ok(&["kustomize", base.to_str().expect("utf-8")], None);
    let docs: Vec<Value> = text
        .split("\n---\n")
        .map(|d| serde_yaml::from_str::<Value>(d).expect("rendered YAML"))
        .map(|mut d| {
            match d["kind"].as_str() {
                Some("ConfigMap") => d["data"] = json!({"persistence.yaml": config}),
                Some("MutatingWebhookConfiguration") => {
                    d["webhooks"][0]["clientConfig"] = json!({"url": url, "caBundle": ca_bundle});
                }
                _ => {}
            }
            d
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string()
}

/// Takes the opt-in label off every namespace, so only this test's count.
fn unlabel_all() {
    kubectl_ok(
        &[
            "label",
            "namespace",
            "--all",
            "polyaxon.com/persistence-injection-",
        ],
        None,
    );
}

/// A namespace opted in, with the Secrets and the Bound claim `CONFIG`'s
/// stores reference.
fn team(ns: &str) {
    namespace(ns, true);
    kubectl_ok(
        &[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "gcs-secret",
            "--from-literal=gcs-key.json={}",
        ],
        None,
    );
    kubectl_ok(
        &[
            "-n",
            ns,
            "create",
            "secret",
            "generic",
            "s3-secret",
            "--from-literal=s3-key.json={}",
            "--from-literal=aws-id=AKIAEXAMPLE",
            "--from-literal=aws-secret=example-secret-access-key",
        ],
        None,
    );
    claim(ns, "data-2-pvc");
}

fn claim(ns: &str, name: &str) {
    let pvc = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    });
    claims_bound(&pvc.to_string());
}

/// Creates the claims in `manifests` (JSON, one or a List) and plays the
/// controllers kube-local lacks: the binder (`phase: Bound`) and the
/// pvc-protection controller (its finalizer off, so claims and their
/// namespaces can be deleted).
fn claims_bound(manifests: &str) {
    kubectl_ok(&["apply", "-f", "-"], Some(manifests));
    kubectl_ok(
        &[
            "patch",
            "-f",
            "-",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        Some(manifests),
    );
    kubectl_ok(
        &[
            "patch",
            "-f",
            "-",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Bound"}}"#,
        ],
        Some(manifests),
    );
}

impl Install {
    /// Everything healthy: the webhook serving `CONFIG`, the manifests
    /// applied and registered by URL, the serving Secret, the pods Ready.
    fn healthy() -> Install {
        Install::healthy_from("base", "persistence-webhook-tls")
    }

    /// The same with the manifests of `dir`, the certificate in the Secret
    /// `secret` (the only serving Secret there is).
    fn healthy_from(dir: &str, secret: &str) -> Install {
        unlabel_all();
        for stale in [
            "persistence-webhook-tls",
            "persistence-webhook-certificates",
        ] {
            kubectl_ok(
                &["-n", NS, "delete", "secret", stale, "--ignore-not-found"],
                None,
            );
        }
        // A Deployment made afresh: a template changed from another test's
        // manifests would roll out, and the pods made ready here be
        // replaced under the test.
        kubectl_ok(
            &[
                "-n",
                NS,
                "delete",
                "deployment",
                NAME,
                "--ignore-not-found",
                "--wait=true",
            ],
            None,
        );
        common::eventually_blocking("the old Deployment's pods are gone", || {
            kubectl_ok(
                &[
                    "-n",
                    NS,
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/name=persistence-webhook",
                    "-o",
                    "name",
                ],
                None,
            )
            .trim()
            .is_empty()
        });
        let pki = Pki::new();
        let config = tempfile::tempdir().expect("tempdir");
        let file = config.path().join("persistence.yaml");
        std::fs::write(&file, CONFIG).expect("config");
        let hook = common::Spawned::start(
            &[
                "--config",
                file.to_str().expect("utf-8"),
                "--tls-cert",
                &pki.path("tls.crt"),
                "--tls-key",
                &pki.path("tls.key"),
            ],
            "info",
        );
        let url = format!("https://127.0.0.1:{}/mutate", hook.addr.port());
        kubectl_ok(
            &["apply", "-f", "-"],
            Some(&rendered(dir, CONFIG, &url, &pki.ca_bundle)),
        );
        let secret = kubectl_ok(
            &[
                "-n",
                NS,
                "create",
                "secret",
                "tls",
                secret,
                "--cert",
                &pki.path("tls.crt"),
                "--key",
                &pki.path("tls.key"),
                "--dry-run=client",
                "-o",
                "json",
            ],
            None,
        );
        kubectl_ok(&["apply", "-f", "-"], Some(&secret));
        deployment_pods_ready(NS, NAME, true, 10);
        Install {
            _registered: Registered(NAME),
            pki,
            hook: Some(hook),
            _config: config,
        }
    }

    fn url(&self) -> String {
        let port = self.hook.as_ref().map_or(1, |h| h.addr.port());
        format!("https://127.0.0.1:{port}/mutate")
    }
}

/// One run of `check --output json`.
struct Run {
    code: i32,
    /// How long the JSON run took.
    elapsed: std::time::Duration,
    report: Value,
    text: String,
}

fn check(extra: &[&str]) -> Run {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["check", "--output", "json"])
        .args(extra)
        .output()
        .expect("check runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "check --output json: {e}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let text = Command::new(BIN)
        .arg("check")
        .args(extra)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("check runs");
    // The report as people read it, shown with --nocapture or on failure.
    println!("{text}");
    Run {
        elapsed,
        code: out.status.code().unwrap_or(-1),
        report,
        text,
    }
}

impl Run {
    /// (group, check) of every check with this result.
    fn with(&self, result: &str) -> Vec<(String, Value)> {
        let mut found = Vec::new();
        for g in self.report["groups"].as_array().into_iter().flatten() {
            for c in g["checks"].as_array().into_iter().flatten() {
                if c["result"] == result {
                    found.push((g["name"].as_str().unwrap_or_default().to_owned(), c.clone()));
                }
            }
        }
        found
    }

    fn one(&self, group: &str, id: &str) -> Value {
        let found: Vec<Value> = self.report["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"] == group)
            .flat_map(|g| g["checks"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["id"] == id)
            .collect();
        assert_eq!(found.len(), 1, "{group}/{id} in {}", self.text);
        found[0].clone()
    }

    /// That check's result is `result`.
    fn is(&self, group: &str, id: &str, result: &str) {
        let c = self.one(group, id);
        assert_eq!(c["result"], result, "{group}/{id}: {}", self.text);
    }

    /// Exactly one check failed: this one; its detail and hint say so.
    fn fails_only(&self, group: &str, id: &str, detail: &str, hint: &str) {
        let failed = self.with("failed");
        let ids: Vec<String> = failed
            .iter()
            .map(|(g, c)| format!("{g}/{}", c["id"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(ids, [format!("{group}/{id}")], "{}", self.text);
        let c = &failed[0].1;
        assert!(
            c["detail"].as_str().is_some_and(|d| d.contains(detail)),
            "detail lacks {detail:?}: {}",
            self.text
        );
        assert!(
            c["hint"].as_str().is_some_and(|h| h.contains(hint)),
            "hint lacks {hint:?}: {}",
            self.text
        );
        assert_eq!(self.code, 1, "{}", self.text);
        assert_eq!(self.report["success"], false);
        assert!(self.text.contains("× 1 check failed"), "{}", self.text);
    }
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_healthy_install_reports_no_failure() {
    let _install = Install::healthy();
    team("chk-healthy");
    let run = check(&[]);
    assert!(run.with("failed").is_empty(), "{}", run.text);
    assert_eq!(run.code, 0, "{}", run.text);
    assert_eq!(run.report["success"], true);
    for (group, id) in [
        ("kubernetes-api", "api-reachable"),
        ("webhook configuration", "webhook-exists"),
        ("webhook configuration", "webhook-timeout"),
        ("certificates", "ca-bundle-verifies"),
        ("certificates", "serving-cert-names"),
        ("certificates", "serving-cert-expiry"),
        ("deployment", "deployment-ready"),
        ("config", "config-validates"),
        ("namespace chk-healthy", "namespace-selected"),
        ("namespace chk-healthy", "probe"),
    ] {
        run.is(group, id, "passed");
    }
    assert_eq!(
        run.one("namespace chk-healthy", "probe")["detail"],
        "data data-gcs, data1, data2; outputs outputs1 at /outputs/1/chk-healthy/persistence-webhook-check-probe"
    );
    assert_eq!(
        run.one("certificates", "serving-cert-names")["detail"],
        "covers 127.0.0.1"
    );
    assert_eq!(
        run.one("deployment", "deployment-ready")["detail"],
        "2/2 ready"
    );
    let secrets: Vec<String> = run
        .with("passed")
        .into_iter()
        .filter(|(g, c)| {
            g == "namespace chk-healthy" && (c["id"] == "secret" || c["id"] == "claim")
        })
        .map(|(_, c)| c["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        secrets,
        [
            "Secret gcs-secret has key gcs-key.json",
            "Secret s3-secret has key aws-id, aws-secret, s3-key.json",
            "PersistentVolumeClaim data-2-pvc is Bound"
        ]
    );
    // No warning: the cluster is current, and the URL registration skips the Service.
    let warnings: Vec<Value> = run
        .with("warning")
        .into_iter()
        .map(|(_, c)| c["id"].clone())
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}\n{}", run.text);
    assert!(
        run.text.contains("√ persistence-webhook is healthy"),
        "{}",
        run.text
    );
    // A team asking about its own, unlabelled, namespace is told what to run.
    team("chk-unlabelled");
    kubectl_ok(
        &[
            "label",
            "namespace",
            "chk-unlabelled",
            "polyaxon.com/persistence-injection-",
        ],
        None,
    );
    let asked = check(&["-n", "chk-unlabelled"]);
    asked.fails_only(
        "namespace chk-unlabelled",
        "namespace-selected",
        "not labelled polyaxon.com/persistence-injection=enabled",
        "kubectl label namespace chk-unlabelled polyaxon.com/persistence-injection=enabled",
    );
    // Nothing was stored: the probes were dry runs.
    let (found, _, _) = kubectl(
        &[
            "-n",
            "chk-healthy",
            "get",
            "pod",
            "persistence-webhook-check-probe",
        ],
        None,
    );
    assert!(!found, "a probe pod was stored");
    // No Secret value appears anywhere in the report.
    let json = run.report.to_string();
    for value in [
        "AKIAEXAMPLE",
        "QUtJQUVYQU1QTEU",
        "example-secret-access-key",
        "e30=",
    ] {
        assert!(
            !run.text.contains(value) && !json.contains(value),
            "{value} printed: {}",
            run.text
        );
    }
}

/// The install the README gives (`certificates.mode=in-cluster`, here its
/// kustomize overlay): `check` with no flag reads the serving certificate
/// from the Secret `serve` manages itself, named by the Deployment's
/// args, and passes. Before, it looked for the files overlays' Secret and
/// failed every such install as "the webhook's pods cannot start". With
/// that Secret gone, the failure says what creates it.
#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn an_in_cluster_certificates_install_is_checked_with_its_own_secret() {
    let _install = Install::healthy_from(
        "overlays/in-cluster-certificates",
        "persistence-webhook-certificates",
    );
    team("chk-in-cluster");
    let run = check(&[]);
    assert!(run.with("failed").is_empty(), "{}", run.text);
    assert_eq!(run.code, 0, "{}", run.text);
    for id in [
        "ca-bundle-verifies",
        "serving-cert-names",
        "serving-cert-expiry",
    ] {
        run.is("certificates", id, "passed");
    }
    kubectl_ok(
        &[
            "-n",
            NS,
            "delete",
            "secret",
            "persistence-webhook-certificates",
        ],
        None,
    );
    let run = check(&[]);
    run.fails_only(
        "certificates",
        "serving-secret",
        "not found: serve --certificates in-cluster has not created it",
        "serve creates it at start: kubectl -n persistence-webhook logs deploy/persistence-webhook",
    );
    let title = run.one("certificates", "serving-secret")["title"].clone();
    assert_eq!(
        title,
        "serving Secret persistence-webhook/persistence-webhook-certificates holds the certificate",
        "{}",
        run.text
    );
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn no_webhook_configuration() {
    let _install = Install::healthy();
    team("chk-noconfig");
    kubectl_ok(&["delete", "mutatingwebhookconfiguration", NAME], None);
    let run = check(&[]);
    run.fails_only(
        "webhook configuration",
        "webhook-exists",
        "not found",
        "kubectl apply -k manifests/overlays/self-managed",
    );
    run.is("namespace chk-noconfig", "probe", "skipped");
}

/// The registration with one more matchCondition, once the API server
/// applies it: a server dry run in `ns` is no longer mutated.
fn add_match_condition(ns: &str, name: &str, expression: &str) {
    let op = json!([{"op": "add", "path": "/webhooks/0/matchConditions/-",
                     "value": {"name": name, "expression": expression}}]);
    kubectl_ok(
        &[
            "patch",
            "mutatingwebhookconfiguration",
            NAME,
            "--type=json",
            "-p",
            &op.to_string(),
        ],
        None,
    );
    common::eventually_blocking("the API server applies the new matchCondition", || {
        let (ok, out, _) = create(ns, &pod("cond", json!({}), json!({})), DryRun::Yes);
        ok && !out.contains("POLYAXON_RUN_DATA_PATHS")
    });
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_match_condition_that_excludes_pods() {
    let _install = Install::healthy();
    team("chk-cond");
    // The shipped conditions pass, each listed by name.
    let run = check(&[]);
    run.is(
        "webhook configuration",
        "webhook-match-conditions",
        "passed",
    );
    let listed = run.one("webhook configuration", "webhook-match-conditions");
    assert!(
        listed["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not-kubernetes-system-namespace")
                && d.contains("not-webhook-namespace")
                && d.contains("not-mirror-pod")),
        "{}",
        run.text
    );
    run.is("namespace chk-cond", "probe", "passed");

    // One false for this namespace only: the probe names it.
    add_match_condition(
        "chk-cond",
        "not-chk-cond",
        "request.namespace != 'chk-cond'",
    );
    let run = check(&[]);
    run.fails_only(
        "namespace chk-cond",
        "probe",
        "matchCondition not-chk-cond (request.namespace != 'chk-cond') is false for a pod CREATE in namespace chk-cond",
        "fix matchCondition not-chk-cond",
    );

    // One false for every request: the configuration check fails, naming it.
    add_match_condition(
        "chk-cond",
        "never",
        "request.operation == 'CREATE' && false",
    );
    let run = check(&[]);
    let failed: Vec<String> = run
        .with("failed")
        .iter()
        .map(|(g, c)| format!("{g}/{}", c["id"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        failed,
        [
            "webhook configuration/webhook-match-conditions",
            "namespace chk-cond/probe"
        ],
        "{}",
        run.text
    );
    let c = run.one("webhook configuration", "webhook-match-conditions");
    assert!(
        c["detail"]
            .as_str()
            .is_some_and(|d| d.contains("matchCondition never is false for every request")),
        "{}",
        run.text
    );
    assert_eq!(run.code, 1);
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_ca_bundle_from_another_ca() {
    let install = Install::healthy();
    team("chk-otherca");
    let other = Pki::new();
    let url = install.url();
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&rendered("base", CONFIG, &url, &other.ca_bundle)),
    );
    let run = check(&[]);
    run.fails_only(
        "certificates",
        "ca-bundle-verifies",
        "does not verify",
        "caBundle",
    );
    run.is("namespace chk-otherca", "probe", "skipped");
}

/// Rules that never send a pod CREATE: the rules check fails and says so,
/// and the probe is skipped pointing at the rules (it used to fail with a
/// hint about the namespaceSelector and the logs).
#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn rules_that_never_send_pod_create() {
    let _install = Install::healthy();
    team("chk-rules");
    kubectl_ok(
        &[
            "patch",
            "mutatingwebhookconfiguration",
            "persistence-webhook",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["UPDATE"]}]"#,
        ],
        None,
    );
    let run = check(&[]);
    run.fails_only(
        "webhook configuration",
        "webhook-rules",
        "never called for new pods",
        "operations: [CREATE]",
    );
    let probe = run.one("namespace chk-rules", "probe");
    assert_eq!(probe["result"], "skipped", "{}", run.text);
    assert!(
        probe["detail"]
            .as_str()
            .is_some_and(|d| d.contains("rules never send a pod CREATE")),
        "{}",
        run.text
    );
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn the_webhook_process_stopped() {
    let mut install = Install::healthy();
    team("chk-stopped");
    if let Some(hook) = install.hook.take() {
        hook.stop();
    }
    // Before the kubelet notices, only the probe through the API server can tell.
    let run = check(&[]);
    run.fails_only(
        "namespace chk-stopped",
        "probe",
        "cannot call the webhook",
        "logs deploy/persistence-webhook",
    );
    assert!(
        run.one("namespace chk-stopped", "probe")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("connection refused")),
        "{}",
        run.text
    );
    // Once its pods are not Ready, the Deployment says so and the probes wait.
    deployment_pods_ready(NS, NAME, false, 10);
    let run = check(&[]);
    run.fails_only(
        "deployment",
        "deployment-ready",
        "0 of 2 replicas ready",
        "kubectl -n persistence-webhook logs deploy/persistence-webhook",
    );
    run.is("namespace chk-stopped", "probe", "skipped");
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_labelled_namespace_missing_a_stores_secret() {
    let _install = Install::healthy();
    team("chk-nosecret");
    kubectl_ok(
        &["-n", "chk-nosecret", "delete", "secret", "s3-secret"],
        None,
    );
    let run = check(&[]);
    run.fails_only(
        "namespace chk-nosecret",
        "secret",
        "not found in chk-nosecret; store outputs-s3 needs it",
        "kubectl -n chk-nosecret create secret generic s3-secret --from-file=aws-id=FILE --from-file=aws-secret=FILE --from-file=s3-key.json=FILE",
    );
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_secret_without_the_key() {
    let _install = Install::healthy();
    team("chk-nokey");
    kubectl_ok(&["-n", "chk-nokey", "delete", "secret", "gcs-secret"], None);
    kubectl_ok(
        &[
            "-n",
            "chk-nokey",
            "create",
            "secret",
            "generic",
            "gcs-secret",
            "--from-literal=key.json=super-secret-value",
        ],
        None,
    );
    let run = check(&[]);
    run.fails_only(
        "namespace chk-nokey",
        "secret",
        "it has no key gcs-key.json (it has: key.json); store data-gcs needs it",
        "or fix data-gcs.secretKey in the config",
    );
    assert!(
        !run.text.contains("super-secret-value"),
        "a value was printed"
    );
    assert!(
        !run.report.to_string().contains("c3VwZXItc2VjcmV0"),
        "a value was printed"
    );
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_missing_persistent_volume_claim() {
    let _install = Install::healthy();
    team("chk-nopvc");
    kubectl_ok(
        &[
            "-n",
            "chk-nopvc",
            "delete",
            "pvc",
            "data-2-pvc",
            "--wait=false",
        ],
        None,
    );
    common::eventually_blocking("the claim is gone", || {
        !kubectl(&["-n", "chk-nopvc", "get", "pvc", "data-2-pvc"], None).0
    });
    let run = check(&[]);
    run.fails_only(
        "namespace chk-nopvc",
        "claim",
        "not found in chk-nopvc; store data2 mounts it",
        "create PersistentVolumeClaim data-2-pvc in chk-nopvc",
    );
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_config_that_does_not_validate() {
    let _install = Install::healthy();
    team("chk-badconfig");
    let bad = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "persistence-webhook-config", "namespace": NS},
        "data": {"persistence.yaml": "data:\n  data1: {mountPath: relative/path, hostPath: /x}\n"}
    });
    kubectl_ok(&["apply", "-f", "-"], Some(&bad.to_string()));
    let run = check(&[]);
    run.fails_only(
        "config",
        "config-validates",
        "data.data1.mountPath",
        "persistence-webhook mutate --config",
    );
    run.is("namespace chk-badconfig", "references", "skipped");
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn a_service_registration_needs_ready_endpoints() {
    let install = Install::healthy();
    team("chk-service");
    // The manifests' own clientConfig: the Service, which kube-local cannot
    // route to; its Endpoints are written by hand, all not ready.
    let mut doc = rendered("base", CONFIG, &install.url(), &install.pki.ca_bundle);
    doc = doc.replace(
        &format!("\"clientConfig\":{{\"caBundle\":\"{}\",\"url\":\"{}\"}}", install.pki.ca_bundle, install.url()),
        &format!(
            "\"clientConfig\":{{\"caBundle\":\"{}\",\"service\":{{\"name\":\"{NAME}\",\"namespace\":\"{NS}\",\"path\":\"/mutate\",\"port\":443}}}}",
            install.pki.ca_bundle
        ),
    );
    assert!(
        doc.contains("\"service\":{\"name\""),
        "clientConfig replaced: {doc}"
    );
    kubectl_ok(&["apply", "-f", "-"], Some(&doc));
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NS},
        "subsets": [{
            "notReadyAddresses": [{"ip": "10.0.0.10"}, {"ip": "10.0.0.11"}],
            "ports": [{"name": "https", "port": 8443}, {"name": "metrics", "port": 9090}]
        }]
    });
    kubectl_ok(&["apply", "-f", "-"], Some(&endpoints.to_string()));
    let run = check(&[]);
    run.fails_only(
        "deployment",
        "service-endpoints",
        "no ready endpoint (2 not ready)",
        "kubectl -n persistence-webhook get pods,endpoints",
    );
    run.is("namespace chk-service", "probe", "skipped");
    assert_eq!(
        run.one("certificates", "serving-cert-names")["detail"],
        "covers persistence-webhook.persistence-webhook.svc"
    );
    kubectl_ok(&["-n", NS, "delete", "endpoints", NAME], None);
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn fifty_namespaces_take_seconds() {
    let _install = Install::healthy();
    // A previous run's namespaces, if any, must be gone before they are made again.
    kubectl_ok(
        &["delete", "namespace", "-l", "chk-scale=yes", "--wait=true"],
        None,
    );
    let names: Vec<String> = (0..50).map(|i| format!("chk-scale-{i:02}")).collect();
    let mut docs = Vec::new();
    let mut claims = Vec::new();
    for ns in &names {
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"polyaxon.com/persistence-injection": "enabled", "chk-scale": "yes"}}}));
        docs.push(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "gcs-secret", "namespace": ns}, "stringData": {"gcs-key.json": "{}"}}));
        docs.push(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s3-secret", "namespace": ns},
            "stringData": {"s3-key.json": "{}", "aws-id": "AKIAEXAMPLE", "aws-secret": "example"}}));
        claims.push(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-2-pvc", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}));
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    kubectl_ok(&["apply", "-f", "-"], Some(&list.to_string()));
    claims_bound(&json!({"apiVersion": "v1", "kind": "List", "items": claims}).to_string());
    common::eventually_blocking("every namespace has its default ServiceAccount", || {
        let all = kubectl_ok(
            &[
                "get",
                "serviceaccounts",
                "-A",
                "--field-selector",
                "metadata.name=default",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}{\"\\n\"}{end}",
            ],
            None,
        );
        names.iter().all(|n| all.lines().any(|l| l == n))
    });
    let one_at_a_time = check(&["--concurrency", "1"]);
    let run = check(&["--concurrency", "8"]);
    println!(
        "check of {} opted-in namespaces (2 dry-run pods, 2 Secrets and 1 claim each): {:.2}s 8 at once (the default), {:.2}s one at a time",
        names.len(),
        run.elapsed.as_secs_f64(),
        one_at_a_time.elapsed.as_secs_f64()
    );
    assert_eq!(one_at_a_time.report["summary"], run.report["summary"]);
    assert!(run.with("failed").is_empty(), "{}", run.text);
    let groups = run.report["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter(|g| {
                    g["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("namespace chk-scale-"))
                })
                .count()
        })
        .unwrap_or_default();
    assert_eq!(groups, 50);
    run.is("namespace chk-scale-07", "claim", "passed");
    run.is("namespace chk-scale-07", "probe", "passed");
    kubectl_ok(
        &["delete", "namespace", "-l", "chk-scale=yes", "--wait=false"],
        None,
    );
}

/// With only the permissions of `manifests/check` (a pod's view), every
/// check can read what it needs: nothing fails and nothing says "cannot
/// read"; and those permissions are no wider than that.
#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn check_runs_with_only_its_rbac() {
    let _install = Install::healthy();
    team("chk-rbac");
    let dir = manifests().join("check");
    kubectl_ok(&["apply", "-k", dir.to_str().expect("utf-8")], None);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = kubeconfig_as(dir.path(), NS, "persistence-webhook-check");
    let run = check(&["--kubeconfig", &path]);
    assert!(run.with("failed").is_empty(), "{}", run.text);
    let warnings: Vec<Value> = run
        .with("warning")
        .into_iter()
        .map(|(_, c)| c["id"].clone())
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}\n{}", run.text);
    run.is("namespace chk-rbac", "probe", "passed");
    let who = format!("--as=system:serviceaccount:{NS}:persistence-webhook-check");
    for (verb, resource, allowed) in [
        ("get", "secrets", "yes"),
        ("list", "secrets", "no"),
        ("create", "pods", "yes"),
        ("delete", "pods", "no"),
        ("update", "mutatingwebhookconfigurations", "no"),
        ("get", "configmaps/other", "no"),
    ] {
        let (_, out, _) = kubectl(
            &["auth", "can-i", verb, resource, "-n", "chk-rbac", &who],
            None,
        );
        assert_eq!(out.trim(), allowed, "can-i {verb} {resource}");
    }
}

/// Exit 2 with the reason when there is no API server to ask.
#[test]
fn an_unreachable_api_server_is_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .expect("kubeconfig");
    let out = Command::new(BIN)
        .args(["check", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--timeout", "5s"])
        .output()
        .expect("check runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot reach the API server"), "{stderr}");
    assert!(out.stdout.is_empty());
    let usage = Command::new(BIN)
        .args(["check", "--output", "yaml"])
        .output()
        .expect("check runs");
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--output"));
}

/// `explain --pod NS/NAME` with its own flags; (exit code, stdout, stderr).
fn explain(extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .arg("explain")
        .args(extra)
        .output()
        .expect("explain runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Live `explain --pod NS/NAME` without `--config` reads the installed
/// config (the ConfigMap the Deployment of `manifests/base` mounts) and
/// gives the same account as `--config` of the same file; without the
/// reads it needs, or with a config that does not validate, it says which
/// object, which verb and what to do.
#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn explain_without_config_reads_the_installed_config() {
    let _install = Install::healthy();
    let ns = "chk-explain";
    team(ns);
    let sel = json!({"polyaxon.com/persistence": "data: [data1, data-gcs]\noutputs: outputs1"});
    let stored = created(ns, &pod("train", sel, json!({})), DryRun::No);
    assert!(injected(&stored).is_some(), "the webhook mutated it");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("persistence.yaml");
    std::fs::write(&file, CONFIG).expect("config");
    let file = file.to_str().expect("utf-8");
    let target = format!("{ns}/train");

    let run = |extra: &[&str]| {
        let mut args = vec!["--pod", target.as_str()];
        args.extend_from_slice(extra);
        let (code, out, err) = explain(&args);
        assert_eq!(code, 0, "explain {args:?}:\n{err}\n{out}");
        out
    };
    let installed: Value =
        serde_json::from_str(&run(&["--output", "json"])).expect("explain prints JSON");
    let given: Value = serde_json::from_str(&run(&["--output", "json", "--config", file]))
        .expect("explain prints JSON");
    assert_eq!(installed["live"]["verdict"], "mutated", "{installed:#}");
    assert_eq!(installed["live"], given["live"]);
    assert_eq!(installed["account"], given["account"]);
    assert_eq!(
        installed["config"],
        json!({"from": "installed", "deployment": format!("{NS}/{NAME}"),
               "configMap": format!("{NS}/persistence-webhook-config"), "key": "persistence.yaml"})
    );
    assert_eq!(given["config"], json!({"from": "file", "path": file}));
    // The text: the same lines but the one naming the config.
    let (a, b) = (run(&[]), run(&["--config", file]));
    let differ: Vec<(&str, &str)> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
    assert_eq!(a.lines().count(), b.lines().count(), "{a}\n---\n{b}");
    assert_eq!(
        differ,
        [(
            "what the webhook would do with it now (today's config: ConfigMap persistence-webhook/persistence-webhook-config, key persistence.yaml, mounted by Deployment persistence-webhook/persistence-webhook):",
            format!("what the webhook would do with it now (today's config: --config {file}):").as_str()
        )],
        "{a}"
    );

    // Without get on deployments and configmaps in the webhook's
    // namespace: the object, the verb and the grant; --config needs no
    // such read.
    let who = "pw-explain-reader";
    kubectl_ok(&["-n", ns, "create", "serviceaccount", who], None);
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": who},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get"]},
            {"apiGroups": ["admissionregistration.k8s.io"],
             "resources": ["mutatingwebhookconfigurations"], "verbs": ["get"]}
        ]
    });
    kubectl_ok(&["apply", "-f", "-"], Some(&role.to_string()));
    let _ = kubectl(
        &["delete", "clusterrolebinding", who, "--ignore-not-found"],
        None,
    );
    kubectl_ok(
        &[
            "create",
            "clusterrolebinding",
            who,
            &format!("--clusterrole={who}"),
            &format!("--serviceaccount={ns}:{who}"),
        ],
        None,
    );
    let reader = kubeconfig_as(dir.path(), ns, who);
    let (code, out, err) = explain(&["--pod", &target, "--kubeconfig", &reader]);
    assert_eq!(code, 2, "{err}\n{out}");
    assert!(out.is_empty(), "{out}");
    for fragment in [
        "forbidden to get deployments persistence-webhook/persistence-webhook",
        "needs get on deployments and configmaps in namespace persistence-webhook",
        "manifests/check",
        "or pass --config FILE",
    ] {
        assert!(err.contains(fragment), "{fragment:?} in {err}");
    }
    let (code, out, err) = explain(&[
        "--pod",
        &target,
        "--kubeconfig",
        &reader,
        "--config",
        file,
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let with_file: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(with_file["account"], given["account"]);
    kubectl_ok(&["delete", "clusterrolebinding", who], None);
    kubectl_ok(&["delete", "clusterrole", who], None);

    // An installed config that does not validate: named, with the field.
    let bad = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "persistence-webhook-config", "namespace": NS},
        "data": {"persistence.yaml": "data:\n  data1: {mountPath: relative/path, hostPath: /x}\n"}
    });
    kubectl_ok(&["apply", "-f", "-"], Some(&bad.to_string()));
    let (code, _, err) = explain(&["--pod", &target]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the installed config, ConfigMap persistence-webhook/persistence-webhook-config, does not validate")
            && err.contains("data.data1.mountPath"),
        "{err}"
    );
    // No Deployment there: which one, and the flags to name another.
    let (code, _, err) = explain(&["--pod", &target, "--webhook-namespace", "nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("Deployment nowhere/persistence-webhook not found")
            && err.contains("--webhook-namespace"),
        "{err}"
    );
}
