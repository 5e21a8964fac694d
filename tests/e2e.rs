//! End to end against a real kube-apiserver (the Kubernetes `tests/cluster/kube-local` builds).
//!
//! Ignored by default; `.ci/run` starts the API server and runs them with
//! `cargo test --test 'e2e*' -- --ignored --test-threads=1`. They take the
//! cluster the way the ecosystem does: `KUBECONFIG`, and `KUBEBUILDER_ASSETS`
//! for the `kubectl` binary (else `kubectl` from `PATH`). Without a reachable
//! API server they FAIL, loudly: they never skip.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cluster::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
  data2: {mountPath: /data/2, existingClaim: data-2-pvc}
  data-gcs: {store: gcs, bucket: "gs://data-bucket", secret: gcs-secret, secretKey: gcs-key.json}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
  outputs-gcs: {store: gcs, bucket: "gs://outputs-bucket", secret: gcs-out-secret, secretKey: gcs-out.json}
defaultOutputs: outputs1
"#;

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn pods_are_mutated_by_a_real_api_server() {
    let started = Instant::now();
    let hook = Webhook::start(CONFIG);
    let url = format!("https://127.0.0.1:{}/mutate", hook.port);
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&registration(
            "persistence-webhook-e2e",
            &url,
            &hook.ca_bundle,
        )),
    );
    let _registered = Registered("persistence-webhook-e2e");
    let ns = "pw-e2e";
    namespace(ns, true);

    // The API server picks the registration up asynchronously.
    common::eventually_blocking("the webhook mutates a server dry run", || {
        let (ok, out, _) = create(ns, &pod("probe", json!({}), json!({})), DryRun::Yes);
        ok && out.contains("POLYAXON_RUN_DATA_PATHS")
    });

    // 1. A stored pod has our volumes, mounts, env and annotation (SPEC §4).
    let sel = json!({"polyaxon.com/persistence": "data: [data1, data-gcs]\noutputs: outputs1"});
    created(ns, &pod("train", sel, json!({})), DryRun::No);
    let stored: Value = serde_json::from_str(&kubectl_ok(
        &["-n", ns, "get", "pod", "train", "-o", "json"],
        None,
    ))
    .expect("pod JSON");
    assert_eq!(
        env_value(&stored, "containers", 0, "POLYAXON_RUN_DATA_PATHS").as_deref(),
        Some(r#"{"data-gcs":"gs://data-bucket","data1":"/data/1"}"#)
    );
    assert_eq!(
        env_value(&stored, "containers", 0, "POLYAXON_RUN_OUTPUTS_PATH").as_deref(),
        Some("/outputs/1/pw-e2e/train")
    );
    assert_eq!(
        env_value(
            &stored,
            "containers",
            0,
            "POLYSTORES_RUN_STORES_ACCESS_KEYS"
        )
        .as_deref(),
        Some(r#"{"gs://data-bucket":{"store":"gcs","secret_key":"gcs-key.json"}}"#)
    );
    let key_ref = env_of(&stored, "containers", 0)
        .into_iter()
        .find(|(n, _)| n == "gcs-key.json")
        .map(|(_, e)| e["valueFrom"].clone());
    assert_eq!(
        key_ref,
        Some(json!({"secretKeyRef": {"name": "gcs-secret", "key": "gcs-key.json"}}))
    );
    let vols = volume_names(&stored);
    for v in ["pw-data1", "pw-outputs1", "pw--gcs-credentials"] {
        assert!(
            vols.contains(&v.to_owned()),
            "volume {v} missing from {vols:?}"
        );
    }
    let mounts = &stored["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mounts.as_array().is_some_and(|m| {
            m.iter().any(|m| {
                m["mountPath"] == "/outputs/1/pw-e2e/train" && m["subPath"] == "pw-e2e/train"
            })
        }),
        "outputs mount with subPath: {mounts}"
    );
    assert_eq!(
        injected(&stored),
        Some(
            json!({"data": ["data-gcs", "data1"], "outputs": "outputs1", "outputsPath": "/outputs/1/pw-e2e/train"})
        )
    );

    // 2. --dry-run=server returns the mutated pod and stores nothing.
    let dry = created(ns, &pod("dry", json!({}), json!({})), DryRun::Yes);
    assert_eq!(
        env_value(&dry, "containers", 0, "POLYAXON_RUN_OUTPUTS_PATH").as_deref(),
        Some("/outputs/1/pw-e2e/dry")
    );
    let (exists, _, _) = kubectl(&["-n", ns, "get", "pod", "dry"], None);
    assert!(!exists, "a dry run must store nothing");

    // 3. generateName: the sub-path ends with the admission uid, and is kept.
    let gen = created(ns, &pod("gen-*", json!({}), json!({})), DryRun::No);
    let path = env_value(&gen, "containers", 0, "POLYAXON_RUN_OUTPUTS_PATH").expect("outputs path");
    assert!(
        path.starts_with("/outputs/1/pw-e2e/gen-")
            && path.len() > "/outputs/1/pw-e2e/gen-".len() + 30,
        "{path}"
    );
    assert_eq!(
        injected(&gen).and_then(|i| i["outputsPath"].as_str().map(str::to_owned)),
        Some(path)
    );

    // 4. Init containers get mounts and env too; GCS outputs bring the credentials file.
    let sel = json!({"polyaxon.com/persistence": "{\"data\": [], \"outputs\": \"outputs-gcs\"}"});
    let init = json!({"initContainers": [{"name": "fetch", "image": "busybox:1.36", "command": ["true"]}]});
    let p = created(ns, &pod("gcs-out", sel, init), DryRun::No);
    for list in ["initContainers", "containers"] {
        assert_eq!(
            env_value(&p, list, 0, "POLYAXON_RUN_OUTPUTS_PATH").as_deref(),
            Some("gs://outputs-bucket/pw-e2e/gcs-out"),
            "{list}"
        );
        assert_eq!(
            env_value(&p, list, 0, "GOOGLE_APPLICATION_CREDENTIALS").as_deref(),
            Some("/var/run/secrets/polyaxon.com/gcs/gcs-out.json"),
            "{list}"
        );
        assert_eq!(
            env_value(&p, list, 0, "POLYAXON_RUN_DATA_PATHS").as_deref(),
            Some("{}"),
            "{list}"
        );
    }
    let creds = p["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "pw--gcs-credentials"))
        .cloned();
    assert_eq!(
        creds.map(|v| v["secret"]["secretName"].clone()),
        Some(json!("gcs-out-secret"))
    );

    // 5. A bad selection is refused; kubectl shows the annotation and the valid stores.
    let (ok, _, err) = create(
        ns,
        &pod(
            "bad",
            json!({"polyaxon.com/persistence": "data: [nope]"}),
            json!({}),
        ),
        DryRun::No,
    );
    assert!(!ok, "a bad selection must be refused");
    for fragment in [
        "denied the request",
        "polyaxon.com/persistence",
        "\"nope\"",
        "data: data-gcs, data1, data2; outputs: outputs-gcs, outputs1",
    ] {
        assert!(
            err.contains(fragment),
            "kubectl's message lacks {fragment:?}: {err}"
        );
    }

    // 6. Untouched: a namespace without the label, and an opted-out pod.
    namespace("pw-e2e-off", false);
    let plain = created(
        "pw-e2e-off",
        &pod("plain", json!({}), json!({})),
        DryRun::No,
    );
    assert!(
        env_of(&plain, "containers", 0).is_empty(),
        "not enabled: {plain}"
    );
    let mut opted: Value = serde_json::from_str(&pod("opted", json!({}), json!({}))).expect("JSON");
    opted["metadata"]["labels"] = json!({"polyaxon.com/persistence-injection": "disabled"});
    let out = created(ns, &opted.to_string(), DryRun::No);
    assert!(
        env_of(&out, "containers", 0).is_empty() && injected(&out).is_none(),
        "opted out: {out}"
    );

    // 7. The shipped matchConditions keep pods from the webhook even where
    //    the selectors send them: a mislabelled kube- namespace, and a
    //    static pod's mirror in an opted-in namespace. Stored as created.
    let system = "kube-pw-e2e";
    namespace(system, true);
    let out = created(system, &pod("system", json!({}), json!({})), DryRun::No);
    assert!(
        env_of(&out, "containers", 0).is_empty()
            && injected(&out).is_none()
            && volume_names(&out).iter().all(|v| !v.starts_with("pw-")),
        "a kube- namespace, even labelled: {out}"
    );
    let mirror = pod(
        "mirror",
        json!({"kubernetes.io/config.mirror": "0123abcd"}),
        json!({"nodeName": "node-1"}),
    );
    let out = created(ns, &mirror, DryRun::No);
    assert!(
        env_of(&out, "containers", 0).is_empty() && injected(&out).is_none(),
        "a mirror pod: {out}"
    );
    // ...and a dry run is treated like the real request.
    let out = created(
        ns,
        &mirror.replace("\"mirror\"", "\"mirror-dry\""),
        DryRun::Yes,
    );
    assert!(injected(&out).is_none(), "a mirror pod, dry run: {out}");
    let _ = kubectl(&["delete", "namespace", system, "--wait=false"], None);

    eprintln!("e2e pods: {:.1}s", started.elapsed().as_secs_f64());
}

/// A second mutating webhook that adds an env var and a volume to every pod,
/// registered after ours so the API server reinvokes ours.
#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn reinvocation_keeps_each_injection_exactly_once() {
    let hook = Webhook::start(CONFIG);
    let other = other_webhook::start();
    let ns = "pw-e2e-reinvoke";
    namespace(ns, true);
    // Configurations are called in name order: ours ("a-...") first, then the other.
    let url = format!("https://127.0.0.1:{}/mutate", hook.port);
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&registration(
            "a-persistence-webhook-e2e",
            &url,
            &hook.ca_bundle,
        )),
    );
    let _ours = Registered("a-persistence-webhook-e2e");
    let mut second: Value = serde_json::from_str(&registration(
        "z-other-webhook-e2e",
        &format!("https://127.0.0.1:{}/mutate", other.port),
        &other.ca_bundle,
    ))
    .expect("JSON");
    second["webhooks"][0]["name"] = json!("other.example.com");
    second["webhooks"][0]["reinvocationPolicy"] = json!("Never");
    kubectl_ok(&["apply", "-f", "-"], Some(&second.to_string()));
    let _theirs = Registered("z-other-webhook-e2e");

    common::eventually_blocking("both webhooks mutate a dry run", || {
        let (ok, out, _) = create(ns, &pod("probe", json!({}), json!({})), DryRun::Yes);
        ok && out.contains("POLYAXON_RUN_DATA_PATHS") && out.contains("OTHER_WEBHOOK")
    });
    let p = created(
        ns,
        &pod(
            "twice",
            json!({"polyaxon.com/persistence": "data: [data1, data-gcs]"}),
            json!({}),
        ),
        DryRun::No,
    );
    for name in [
        "POLYAXON_RUN_DATA_PATHS",
        "POLYAXON_RUN_OUTPUTS_PATH",
        "POLYSTORES_RUN_STORES_ACCESS_KEYS",
        "gcs-key.json",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "OTHER_WEBHOOK",
    ] {
        assert_eq!(count_env(&p, "containers", 0, name), 1, "env {name} in {p}");
    }
    let vols = volume_names(&p);
    for v in [
        "pw-data1",
        "pw-outputs1",
        "pw--gcs-credentials",
        "other-webhook",
    ] {
        assert_eq!(
            vols.iter().filter(|n| *n == v).count(),
            1,
            "volume {v} in {vols:?}"
        );
    }
    assert!(other.calls() >= 1, "the other webhook was called");

    // The API server gives the reinvocation a new admission uid; a
    // generateName pod's outputs path must not change with it.
    let p = created(ns, &pod("gen-*", json!({}), json!({})), DryRun::No);
    let path = env_value(&p, "containers", 0, "POLYAXON_RUN_OUTPUTS_PATH").expect("outputs path");
    let mounts: Vec<&Value> = p["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["name"] == "pw-outputs1").collect())
        .unwrap_or_default();
    assert_eq!(mounts.len(), 1, "one outputs mount: {mounts:?}");
    assert_eq!(mounts[0]["mountPath"].as_str(), Some(path.as_str()));
    assert_eq!(
        injected(&p).and_then(|i| i["outputsPath"].as_str().map(str::to_owned)),
        Some(path)
    );
}

/// The webhook's mounts (volumes named `pw-*`) and env of container `i` of
/// `list`: what it added, without what the API server adds (the
/// ServiceAccount token's mount).
/// `mutate` predicted the stored sidecar pod container by container: the
/// plain init container, the native sidecar and the main container.
fn predicted_as_stored(predicted: &Value, stored: &Value) {
    for (list, i) in [
        ("initContainers", 0),
        ("initContainers", 1),
        ("containers", 0),
    ] {
        assert_eq!(
            ours(predicted, list, i),
            ours(stored, list, i),
            "{list}[{i}]"
        );
    }
}

fn ours(pod: &Value, list: &str, i: usize) -> (Vec<Value>, Vec<(String, Value)>) {
    let mounts = pod["spec"][list][i]["volumeMounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["name"].as_str().is_some_and(|n| n.starts_with("pw-")))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    (mounts, env_of(pod, list, i))
}

/// Native sidecars (Kubernetes 1.33+: an init container with
/// `restartPolicy: Always`) are init containers to SPEC §3: an outputs
/// uploader gets the stores like any init container, `containers:` can
/// name it alone, the API server stores the pod with its restartPolicy
/// kept, and `mutate` offline predicts exactly what it got.
#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn native_sidecars_get_the_stores_like_any_init_container() {
    let hook = Webhook::start(CONFIG);
    let url = format!("https://127.0.0.1:{}/mutate", hook.port);
    let name = "persistence-webhook-e2e-sidecar";
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&registration(name, &url, &hook.ca_bundle)),
    );
    let _registered = Registered(name);
    let ns = "pw-e2e-sidecar";
    namespace(ns, true);
    common::eventually_blocking("the webhook mutates a server dry run", || {
        let (ok, out, _) = create(ns, &pod("probe", json!({}), json!({})), DryRun::Yes);
        ok && out.contains("POLYAXON_RUN_DATA_PATHS")
    });
    let uploader = json!({
        "name": "uploader", "image": "busybox:1.36", "restartPolicy": "Always",
        "command": ["sh", "-c", "while sleep 60; do :; done"],
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5}
    });
    let fetch = json!({"name": "fetch", "image": "busybox:1.36", "command": ["true"]});
    let init = json!({"initContainers": [fetch, uploader]});
    let offline = |manifest: &str| -> Value {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, file) = (dir.path().join("config.yaml"), dir.path().join("pod.json"));
        std::fs::write(&config, CONFIG).expect("config");
        std::fs::write(&file, manifest).expect("pod");
        let out = Command::new(BIN)
            .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
            .args(["mutate", "--namespace", ns, "--config"])
            .arg(&config)
            .arg("--pod")
            .arg(&file)
            .output()
            .expect("mutate runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_yaml::from_slice(&out.stdout).expect("mutate prints the pod")
    };

    // 1. Every container: the uploader gets what `fetch` (a plain init
    //    container) and `main` get, and keeps its restartPolicy.
    let sel = json!({"polyaxon.com/persistence": "data: [data1]\noutputs: outputs1"});
    let manifest = pod("upload", sel, init.clone());
    let stored = created(ns, &manifest, DryRun::No);
    let stored: Value = serde_json::from_str(&kubectl_ok(
        &["-n", ns, "get", "pod", "upload", "-o", "json"],
        None,
    ))
    .unwrap_or(stored);
    let side = &stored["spec"]["initContainers"][1];
    assert_eq!(side["name"], "uploader");
    assert_eq!(side["restartPolicy"], "Always", "{side}");
    assert_eq!(
        side["startupProbe"]["exec"]["command"],
        json!(["true"]),
        "{side}"
    );
    assert_eq!(
        env_value(&stored, "initContainers", 1, "POLYAXON_RUN_OUTPUTS_PATH").as_deref(),
        Some("/outputs/1/pw-e2e-sidecar/upload")
    );
    let (mounts, env) = ours(&stored, "initContainers", 1);
    assert_eq!(mounts.len(), 2, "data1 and outputs1: {mounts:?}");
    assert_eq!(
        ours(&stored, "initContainers", 0),
        (mounts.clone(), env.clone())
    );
    assert_eq!(ours(&stored, "containers", 0), (mounts, env));
    // `mutate` predicted it, container by container.
    let predicted = offline(&manifest);
    assert_eq!(
        predicted["spec"]["initContainers"][1]["restartPolicy"],
        "Always"
    );
    predicted_as_stored(&predicted, &stored);
    assert_eq!(
        injected(&stored),
        Some(
            json!({"data": ["data1"], "outputs": "outputs1", "outputsPath": "/outputs/1/pw-e2e-sidecar/upload"})
        )
    );

    // 2. `containers:` names the sidecar alone: only it gets the stores.
    let sel = json!({"polyaxon.com/persistence": "data: [data1]\noutputs: outputs1\ncontainers: [uploader]"});
    let manifest = pod("upload-only", sel, init);
    let (ok, out, err) = create(ns, &manifest, DryRun::No);
    assert!(ok, "kubectl create failed:\n{err}\n{out}");
    let stored: Value = serde_json::from_str(&out).expect("pod JSON");
    assert_eq!(
        stored["spec"]["initContainers"][1]["restartPolicy"],
        "Always"
    );
    assert_eq!(
        env_value(&stored, "initContainers", 1, "POLYAXON_RUN_OUTPUTS_PATH").as_deref(),
        Some("/outputs/1/pw-e2e-sidecar/upload-only")
    );
    assert_eq!(ours(&stored, "initContainers", 1).0.len(), 2, "{stored}");
    for (list, i) in [("initContainers", 0), ("containers", 0)] {
        assert_eq!(
            ours(&stored, list, i),
            (vec![], vec![]),
            "{list}[{i}] gets nothing"
        );
    }
    // The warning names the containers left without stores.
    assert!(
        err.contains("Warning:") && err.contains("main") && err.contains("fetch"),
        "{err}"
    );
    predicted_as_stored(&offline(&manifest), &stored);
}

/// The manifests render, and the API server accepts them as rendered, but
/// for cert-manager's objects: its CRDs are not installed on the test
/// cluster.
#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn manifests_render_and_the_api_server_accepts_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let certs = root.join("overlays/self-managed/certs");
    if !certs.join("tls.crt").exists() {
        let out = Command::new(BIN)
            .args(["certs", "--out"])
            .arg(&certs)
            .output()
            .expect("certs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = kubectl(&["create", "namespace", "persistence-webhook"], None);
    for overlay in ["base", "overlays/self-managed", "overlays/cert-manager"] {
        let dir = root.join(overlay);
        let rendered = kubectl_ok(&["kustomize", dir.to_str().expect("utf-8")], None);
        let docs: Vec<Value> = rendered
            .split("\n---\n")
            .map(|d| serde_yaml::from_str::<Value>(d).expect("rendered YAML"))
            .collect();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "MutatingWebhookConfiguration",
        ] {
            assert!(kinds.contains(&kind), "{overlay}: no {kind} in {kinds:?}");
        }
        let hook = docs
            .iter()
            .find(|d| d["kind"] == "MutatingWebhookConfiguration")
            .expect("webhook");
        match overlay {
            "overlays/self-managed" => assert!(
                hook["webhooks"][0]["clientConfig"]["caBundle"]
                    .as_str()
                    .is_some_and(|b| b.len() > 100),
                "{overlay}: caBundle"
            ),
            "overlays/cert-manager" => assert_eq!(
                hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                "persistence-webhook/persistence-webhook-tls"
            ),
            _ => {}
        }
        let adapted: Vec<String> = docs
            .into_iter()
            .filter(|d| {
                !d["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("cert-manager.io/"))
            })
            .map(|d| d.to_string())
            .collect();
        let out = kubectl_ok(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&adapted.join("\n")),
        );
        assert!(
            out.contains(
                "mutatingwebhookconfiguration.admissionregistration.k8s.io/persistence-webhook"
            ),
            "{overlay}: {out}"
        );
        assert!(
            out.contains("deployment.apps/persistence-webhook"),
            "{overlay}: {out}"
        );
    }
}

mod other_webhook {
    //! A minimal second webhook for the reinvocation test.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use axum::routing::post;
    use axum::Router;
    use base64::Engine as _;
    use persistence_webhook::certs::{ca_bundle, issue, CertRequest};
    use serde_json::{json, Value};

    pub struct Other {
        pub port: u16,
        pub ca_bundle: String,
        calls: Arc<AtomicUsize>,
        _runtime: tokio::runtime::Runtime,
    }

    impl Other {
        pub fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    pub fn start() -> Other {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let req = CertRequest {
            service: "other".into(),
            namespace: "e2e".into(),
            dns: vec![],
            ips: vec!["127.0.0.1".parse().expect("ip")],
            validity: Duration::from_secs(3600),
        };
        let issued = issue(&req, SystemTime::now()).expect("certs");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cert, key) = (
            issued.cert_pem.clone().into_bytes(),
            issued.key_pem.clone().into_bytes(),
        );
        runtime.spawn(async move {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem(cert, key)
                .await
                .expect("tls");
            let app = Router::new().route(
                "/mutate",
                post(move |body: axum::body::Bytes| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            answer(&body).to_string(),
                        )
                    }
                }),
            );
            axum_server::from_tcp_rustls(listener, tls)
                .expect("listener")
                .serve(app.into_make_service())
                .await
                .expect("serve");
        });
        Other {
            port,
            ca_bundle: ca_bundle(&issued.ca_cert_pem),
            calls,
            _runtime: runtime,
        }
    }

    /// Adds env OTHER_WEBHOOK and volume other-webhook, once.
    fn answer(body: &[u8]) -> Value {
        let review: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let uid = review["request"]["uid"].clone();
        let pod = &review["request"]["object"];
        let mut ops = Vec::new();
        let has_env = pod["spec"]["containers"][0]["env"].as_array();
        if !has_env.is_some_and(|e| e.iter().any(|e| e["name"] == "OTHER_WEBHOOK")) {
            let var = json!({"name": "OTHER_WEBHOOK", "value": "1"});
            ops.push(match has_env {
                Some(_) => json!({"op": "add", "path": "/spec/containers/0/env/-", "value": var}),
                None => json!({"op": "add", "path": "/spec/containers/0/env", "value": [var]}),
            });
            ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": {"name": "other-webhook", "emptyDir": {}}}));
        }
        let mut response = json!({"uid": uid, "allowed": true});
        if !ops.is_empty() {
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(
                base64::engine::general_purpose::STANDARD.encode(Value::Array(ops).to_string())
            );
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }
}
