//! End to end: the hybrid install on a real kube-apiserver. The webhook's
//! registration narrowed by the core's `hybrid-webhook-pods` condition,
//! beside the policies of `policy --hybrid`:
//!
//! 1. the webhook alone (not narrowed, no policy) admits every shape: the
//!    reference answers;
//! 2. hybrid: the unannotated shapes get the same stored pods while the
//!    webhook's review counter does not move; the annotated pod and the
//!    generateName pod that needs the admission uid move it by one each and
//!    get the webhook's answer; `check` passes the hybrid group, and
//!    `explain` names the path of a stored pod of each kind;
//! 3. the webhook STOPPED (its process killed, its address refusing): the
//!    unannotated shapes still get the very same stored pods, and the
//!    annotated and the uid pods fail closed (`failurePolicy: Fail`);
//! 4. what `check` says of policies made without `--hybrid`, and of
//!    policies beside a registration that is not narrowed.
//!
//! Ignored by default; `.ci/run` runs every `e2e*` file with `--ignored`.
//! Without a reachable API server it FAILS, loudly: it never skips.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

use assert_cmd::Command;
use cluster::*;
use persistence_webhook_core::policy::hybrid;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");
const NS: &str = "pw-e2e-hybrid";
/// Where `check` finds the config (a ConfigMap); the webhook runs on the
/// host, so nothing else of it lives there.
const SYSTEM: &str = "pw-e2e-hybrid-system";
const HOOK: &str = "pw-e2e-hybrid-hook";
/// The policies' and bindings' name.
const POLICY: &str = "pw-e2e-hybrid";

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
  data-s3: {store: s3, bucket: "s3://data-bucket/x", secret: s3-secret, secretKey: s3-key.json}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
defaultOutputs: outputs1
"#;

fn container() -> Value {
    json!({"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]})
}

/// A pod manifest: `name` ending in `*` is a generateName prefix.
fn pod_of(name: &str, mut meta: Value) -> String {
    match name.strip_suffix('*') {
        Some(prefix) => meta["generateName"] = json!(prefix),
        None => meta["name"] = json!(name),
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [container()]}})
        .to_string()
}

/// Unannotated shapes the policies admit: (case, manifest).
fn policy_shapes() -> Vec<(&'static str, String)> {
    let job = json!({"ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "0e5b9a1c-4d0f-4a43-9b7e-5d8a3f2c1b00", "controller": true}]});
    vec![
        ("bare", pod_of("bare", json!({}))),
        (
            "named",
            pod_of("named-run", json!({"labels": {"app": "x"}})),
        ),
        ("job-pod", pod_of("train-*", job)),
        (
            "generate-name-with-outputs-subpath",
            pod_of(
                "sub-*",
                json!({"annotations": {"polyaxon.com/outputs-subpath": "runs/7"}}),
            ),
        ),
        (
            "generate-name-with-unique-name",
            pod_of(
                "uniq-*",
                json!({"annotations": {"polyaxon.com/unique-name": "user.project.42"}}),
            ),
        ),
    ]
}

/// The shapes the webhook keeps: (case, manifest).
fn webhook_shapes() -> Vec<(&'static str, String)> {
    vec![
        (
            "annotated",
            pod_of(
                "chosen",
                json!({"annotations": {"polyaxon.com/persistence": "data: [data1]\noutputs: outputs1"}}),
            ),
        ),
        ("generate-name-needs-uid", pod_of("web-*", json!({}))),
    ]
}

/// The stored pod, comparable ([`comparable`]), as JSON.
fn normalise(pod: Value) -> Value {
    serde_json::from_str(&comparable(pod)).expect("still JSON")
}

/// The API server's answer: the stored pod (normalised), or the refusal.
fn answer(manifest: &str) -> Result<Value, String> {
    let (ok, out, err) = create(NS, manifest, DryRun::Yes);
    if ok {
        Ok(normalise(
            serde_json::from_str(&out).expect("kubectl -o json prints JSON"),
        ))
    } else {
        Err(err)
    }
}

/// The sum of `persistence_webhook_reviews_total` on the webhook's
/// metrics port: every review it answered, whatever the outcome.
fn reviews(metrics: SocketAddr) -> u64 {
    let mut stream = TcpStream::connect(metrics).expect("the metrics port answers");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("the page");
    page.lines()
        .filter(|l| l.starts_with("persistence_webhook_reviews_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// `policy --config CONFIG --webhook-namespace SYSTEM --name POLICY [--hybrid]`.
fn policies(hybrid: bool) -> String {
    let mut args = vec!["--webhook-namespace", SYSTEM, "--name", POLICY];
    if hybrid {
        args.push("--hybrid");
    }
    policy_objects(CONFIG, &args)
}

/// The manifests' registration pointed at `url`, narrowed when `narrowed`
/// (the core's condition, which the overlay and the chart copy).
fn registration_of(url: &str, ca_bundle: &str, narrowed: bool) -> String {
    let mut reg: Value = serde_json::from_str(&registration(HOOK, url, ca_bundle)).expect("JSON");
    // The webhook's own namespace here is SYSTEM, as the policies say.
    reg["webhooks"][0]["matchConditions"] = json!(shipped_match_conditions()
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if c["name"] == "not-webhook-namespace" {
                c["expression"] = json!(format!("request.namespace != '{SYSTEM}'"));
            }
            c
        })
        .collect::<Vec<_>>());
    if narrowed {
        reg["webhooks"][0]["matchConditions"]
            .as_array_mut()
            .expect("a list")
            .push(hybrid::webhook_condition());
    }
    reg.to_string()
}

/// `check --output json` against SYSTEM and HOOK: the checks of the
/// "hybrid policies" group, and the text report for messages.
fn hybrid_checks() -> (Vec<Value>, String) {
    let (report, text) = check_report();
    (group(&report, "hybrid policies"), text)
}

/// The checks of one group of a `check --output json` report.
fn group(report: &Value, name: &str) -> Vec<Value> {
    report["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["name"] == name)
        .flat_map(|g| g["checks"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// `check --output json` against SYSTEM and HOOK, and the text report.
fn check_report() -> (Value, String) {
    let args = [
        "--webhook-namespace",
        SYSTEM,
        "--webhook-name",
        HOOK,
        "--policy-name",
        POLICY,
        "--namespace",
        NS,
    ];
    let out = Command::new(BIN)
        .args(["check", "--output", "json"])
        .args(args)
        .output()
        .expect("check runs");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let text = Command::new(BIN)
        .arg("check")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .expect("check runs");
    // The report as people read it, shown with --nocapture or on failure.
    println!("{text}");
    (report, text)
}

/// `explain --pod NS/NAME --output json`: the live part's path.
fn explained_path(config: &std::path::Path, name: &str) -> Value {
    let out = Command::new(BIN)
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args(["explain", "--config"])
        .arg(config)
        .args([
            "--pod",
            &format!("{NS}/{name}"),
            "--webhook-name",
            HOOK,
            "--policy-name",
            POLICY,
            "--output",
            "json",
        ])
        .output()
        .expect("explain runs");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("explain: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    println!("explain {name}: {}", v["live"]["path"]);
    v["live"]["path"].clone()
}

#[test]
#[ignore = "needs a Kubernetes 1.36+ API server (KUBECONFIG): tests/cluster/kube-local"]
fn the_webhook_admits_only_its_pods_and_the_others_survive_its_outage() {
    namespace(NS, true);
    namespace(SYSTEM, false);
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "persistence-webhook-config", "namespace": SYSTEM},
                "data": {"persistence.yaml": CONFIG}})
            .to_string(),
        ),
    );
    let mut hook = Webhook::start(CONFIG);
    let url = format!("https://127.0.0.1:{}/mutate", hook.port);
    let metrics = hook.server.metrics;
    let _registered = Registered(HOOK);
    let all: Vec<(&str, String)> = policy_shapes()
        .into_iter()
        .chain(webhook_shapes())
        .collect();

    // 1. The webhook alone: the reference.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&registration_of(&url, &hook.ca_bundle, false)),
    );
    common::eventually_blocking(
        "the webhook mutates a server dry run",
        || matches!(answer(&pod_of("probe", json!({}))), Ok(p) if p.to_string().contains("POLYAXON_RUN_DATA_PATHS")),
    );
    let reference: Vec<Value> = all
        .iter()
        .map(|(case, m)| {
            let got = answer(m).unwrap_or_else(|e| panic!("{case}: the webhook refused it: {e}"));
            assert!(
                got.to_string().contains("POLYAXON_RUN_OUTPUTS_PATH"),
                "{case}: not mutated: {got}"
            );
            got
        })
        .collect();

    // 2. Hybrid: the policies, then the registration narrowed.
    kubectl_ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&policies(true)),
    );
    let _applied = PoliciesApplied(POLICY);
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&registration_of(&url, &hook.ca_bundle, true)),
    );
    // Both changes reach the API server's admission asynchronously: wait
    // until a named pod is mutated without a review.
    common::eventually_blocking("a named pod is mutated by the policy alone", || {
        let before = reviews(metrics);
        let mutated = matches!(answer(&pod_of("probe", json!({}))), Ok(p) if p.to_string().contains("POLYAXON_RUN_DATA_PATHS"));
        mutated && reviews(metrics) == before
    });
    let before = reviews(metrics);
    for ((case, m), want) in all.iter().zip(&reference).take(policy_shapes().len()) {
        let got = answer(m).unwrap_or_else(|e| panic!("{case}: refused in hybrid: {e}"));
        assert_eq!(
            &got, want,
            "{case}: the policy stored another pod than the webhook"
        );
    }
    assert_eq!(
        reviews(metrics),
        before,
        "the webhook reviewed unannotated pods the policies admit"
    );
    for ((case, m), want) in all.iter().zip(&reference).skip(policy_shapes().len()) {
        let at = reviews(metrics);
        let got = answer(m).unwrap_or_else(|e| panic!("{case}: refused in hybrid: {e}"));
        assert_eq!(&got, want, "{case}: the webhook stored another pod");
        assert_eq!(
            reviews(metrics),
            at + 1,
            "{case}: the webhook should have reviewed it once"
        );
    }

    // check: the hybrid group passes, with its five checks; in the
    // namespace, the plain probe (patched by the policies) and the
    // annotated one (by the webhook) both come back as predicted.
    let (report, text) = check_report();
    let hybrid = group(&report, "hybrid policies");
    let results: Vec<&str> = hybrid
        .iter()
        .map(|c| c["result"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(results, ["passed"; 5], "{text}");
    let probes: Vec<(String, String)> = group(&report, &format!("namespace {NS}"))
        .iter()
        .filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("probe")))
        .map(|c| (c["id"].to_string(), c["result"].to_string()))
        .collect();
    let passed = |id: &str| (format!("{id:?}"), "\"passed\"".to_owned());
    assert_eq!(probes, [passed("probe"), passed("probe-webhook")], "{text}");

    // explain: stored pods, each with its path and what decided it.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("persistence.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    for (manifest, name, route, decided_by) in [
        (
            pod_of("hy-named", json!({})),
            "hy-named",
            "policy",
            hybrid::POLICY_CONDITION,
        ),
        (
            pod_of(
                "hy-chosen",
                json!({"annotations": {"polyaxon.com/persistence": "data: [data1]"}}),
            ),
            "hy-chosen",
            "webhook",
            hybrid::WEBHOOK_CONDITION,
        ),
        (
            pod_of("hy-gen-*", json!({})),
            "",
            "webhook",
            hybrid::WEBHOOK_CONDITION,
        ),
    ] {
        let stored = created(NS, &manifest, DryRun::No);
        let name = if name.is_empty() {
            stored["metadata"]["name"]
                .as_str()
                .expect("a generated name")
                .to_owned()
        } else {
            name.to_owned()
        };
        let path = explained_path(&config, &name);
        assert_eq!(path["route"], route, "{name}: {path}");
        assert_eq!(path["decidedBy"], decided_by, "{name}: {path}");
    }

    // 3. The webhook stopped: its process ended, its port refusing.
    kill_and_wait(&mut hook);
    for ((case, m), want) in all.iter().zip(&reference).take(policy_shapes().len()) {
        let got =
            answer(m).unwrap_or_else(|e| panic!("{case}: refused with the webhook down: {e}"));
        assert_eq!(&got, want, "{case}: with the webhook down, another pod");
    }
    for (case, m) in webhook_shapes() {
        match answer(&m) {
            Ok(p) => panic!("{case}: stored with the webhook down (it must fail closed): {p}"),
            Err(e) => assert!(
                e.contains("failed calling webhook") && e.contains("persistence.polyaxon.com"),
                "{case}: {e}"
            ),
        }
    }

    // 4. What check says of policies made without --hybrid...
    kubectl_ok(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&policies(false)),
    );
    let (checks, text) = hybrid_checks();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["result"] == "failed").collect();
    assert_eq!(failed.len(), 2, "the two policies differ: {text}");
    let detail = failed[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("spec.matchConditions has 4 items installed, 5 generated"),
        "{text}"
    );
    assert!(
        failed[0]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("--hybrid"),
        "{text}"
    );
    // ...and of policies beside a registration that is not narrowed.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&registration_of(&url, &hook.ca_bundle, false)),
    );
    let (checks, text) = hybrid_checks();
    assert_eq!(checks.len(), 1, "{text}");
    assert_eq!(checks[0]["result"], "warning", "{text}");
    assert!(
        checks[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("mutated twice"),
        "{text}"
    );
}

/// Ends the webhook's process and waits for it: its port refuses.
fn kill_and_wait(hook: &mut Webhook) {
    let _ = hook.server.child.kill();
    let _ = hook.server.child.wait();
    let addr = hook.server.addr;
    assert!(
        TcpStream::connect(addr).is_err(),
        "the webhook's port {addr} still accepts connections"
    );
}
