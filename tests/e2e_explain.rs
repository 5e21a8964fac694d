//! SPEC §8 against a real kube-apiserver (kube-local): `kubectl create`
//! prints the webhook's warning, the API server's audit log records its
//! audit annotations, and `explain --pod NAMESPACE/NAME` tells a mutated
//! pod, a pod in an unlabelled namespace, an opted-out pod, a pod kept
//! from the webhook by a matchCondition (named) and a pod created before
//! the webhook was registered apart.
//!
//! Ignored by default; `.ci/run` runs them with the other `e2e*` files.
//! Without a reachable API server (or, for the audit part, without
//! `KUBE_LOCAL_AUDIT_LOG`) they FAIL, loudly.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");
const NAME: &str = "persistence-webhook-explain-e2e";

const CONFIG: &str = SMALL_CONFIG;

/// `explain --pod NS/NAME --output json` through the test's kubeconfig:
/// (exit code, stdout as JSON or Null, stderr).
fn explain(config: &std::path::Path, pod: &str, output: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args(["explain", "--config"])
        .arg(config)
        .args(["--pod", pod, "--webhook-name", NAME, "--output", output])
        .output()
        .expect("explain runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn explain_json(config: &std::path::Path, pod: &str) -> Value {
    let (code, out, err) = explain(config, pod, "json");
    assert_eq!(code, 0, "explain --pod {pod} failed:\n{err}\n{out}");
    serde_json::from_str(&out).expect("explain --output json prints JSON")
}

/// The audit log's events for `ns/name` that carry annotations starting
/// with `prefix`, waiting up to 20s for the API server to write them.
fn audit_annotations(ns: &str, name: &str, prefix: &str) -> serde_json::Map<String, Value> {
    let log = std::env::var_os("KUBE_LOCAL_AUDIT_LOG")
        .expect("KUBE_LOCAL_AUDIT_LOG is not set: start the API server with kube-local");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let o = &event["objectRef"];
            if o["resource"] == "pods"
                && o["namespace"] == ns
                && o["name"] == name
                && event["verb"] == "create"
            {
                let found: serde_json::Map<String, Value> = event["annotations"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !found.is_empty() {
                    return found;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no audit event with {prefix}* annotations for pod {ns}/{name} in {}",
            log.to_string_lossy()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs a real API server: run by .ci/run with kube-local"]
fn explain_warnings_and_audit_annotations_on_a_real_api_server() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("persistence.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let (on, off) = ("pw-explain", "pw-explain-off");
    namespace(on, true);
    namespace(off, false);
    unregister(NAME);

    // A pod created before the webhook is registered.
    created(on, &pod("early", json!({}), json!({})), DryRun::No);
    // Timestamps have seconds: register strictly later.
    std::thread::sleep(Duration::from_millis(1100));
    let (_hook, _registered) = serve_registered(CONFIG, NAME, on);

    // 1. kubectl prints our warning: the container keeps its own
    //    GOOGLE_APPLICATION_CREDENTIALS while a GCS store is selected.
    let sel = json!({"polyaxon.com/persistence": "data: [data1, data-gcs]"});
    let own_key = json!({"containers": [{
        "name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
        "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/my/key.json"}]
    }]});
    let (ok, out, err) = create(on, &pod("own-key", sel, own_key), DryRun::No);
    assert!(ok, "kubectl create failed:\n{err}\n{out}");
    let warning = err
        .lines()
        .find(|l| l.starts_with("Warning:"))
        .unwrap_or_else(|| panic!("no Warning: line on kubectl's stderr:\n{err}"));
    assert!(
        warning.contains("container \"main\" sets GOOGLE_APPLICATION_CREDENTIALS itself")
            && !warning.contains("/my/key.json"),
        "{warning}"
    );
    let stored: Value = serde_json::from_str(&out).expect("pod JSON");
    assert_eq!(
        env_value(&stored, "containers", 0, "GOOGLE_APPLICATION_CREDENTIALS").as_deref(),
        Some("/my/key.json"),
        "the container keeps its own value"
    );

    // 2. The audit log records what the pod got, under the webhook's name.
    let audit = audit_annotations(on, "own-key", "persistence.polyaxon.com/");
    // The stores by name, names only.
    assert_eq!(
        audit.get("persistence.polyaxon.com/data"),
        Some(&json!("data-gcs, data1")),
        "{audit:?}"
    );
    assert_eq!(
        audit.get("persistence.polyaxon.com/outputs"),
        Some(&json!("outputs1")),
        "{audit:?}"
    );
    assert_eq!(
        audit.get("persistence.polyaxon.com/outputs-path"),
        Some(&json!("/outputs/1/pw-explain/own-key")),
        "{audit:?}"
    );

    // 3. explain, a mutated pod: what it got, and today's config gives the same.
    created(on, &pod("train", json!({}), json!({})), DryRun::No);
    let v = explain_json(&config, "pw-explain/train");
    assert_eq!(v["live"]["verdict"], "mutated", "{v:#}");
    assert_eq!(v["live"]["mutated"], true);
    assert_eq!(
        v["live"]["got"],
        json!({"data": ["data-gcs", "data1"], "outputs": "outputs1", "outputsPath": "/outputs/1/pw-explain/train"})
    );
    // Re-reviewed without its additions, today's config patches it again
    // with exactly what it has.
    assert_eq!(v["account"]["outcome"], "patched", "{v:#}");
    let main = &v["live"]["containers"][0];
    assert_eq!(main["name"], "main");
    assert!(
        main["env"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("POLYAXON_RUN_OUTPUTS_PATH"))),
        "{main}"
    );
    let (code, text, err) = explain(&config, "pw-explain/train", "text");
    assert_eq!(code, 0, "{err}");
    assert!(
        text.starts_with("live pod pw-explain/train: mutated\n"),
        "{text}"
    );
    assert!(
        text.contains("outputs outputs1 at /outputs/1/pw-explain/train"),
        "{text}"
    );

    // The same pod against a config that dropped data-gcs: it would differ.
    let changed = dir.path().join("changed.yaml");
    std::fs::write(&changed, CONFIG.replace("  data-gcs:", "  # data-gcs:")).expect("config");
    let v = explain_json(&changed, "pw-explain/train");
    assert_eq!(v["live"]["verdict"], "mutated-differs", "{v:#}");
    assert_eq!(
        v["live"]["differences"],
        json!([{"field": "data", "had": "data-gcs, data1", "today": "data1"}]),
        "{v:#}"
    );
    // Re-reviewed without what the webhook added (its POLYAXON_RUN_DATA_PATHS
    // of the first admission would conflict with today's): today's config
    // patches it, and the verdict says what it would give instead.
    assert_eq!(v["account"]["outcome"], "patched", "{v:#}");
    assert!(v["account"]["reason"].is_null(), "{v:#}");
    assert!(
        v["live"]["why"].as_str().is_some_and(
            |w| w.contains("today's config would give data data1 instead of data-gcs, data1")
        ),
        "{v:#}"
    );

    // The pod that kept its own variable: same today, and the warning again.
    let v = explain_json(&config, "pw-explain/own-key");
    assert_eq!(v["live"]["verdict"], "mutated", "{v:#}");
    let main = &v["live"]["containers"][0];
    assert_eq!(
        main["keeps_own"],
        json!(["GOOGLE_APPLICATION_CREDENTIALS"]),
        "{main}"
    );
    assert!(
        main["env"]
            .as_array()
            .is_some_and(|e| !e.contains(&json!("GOOGLE_APPLICATION_CREDENTIALS"))
                && e.contains(&json!("POLYSTORES_RUN_STORES_ACCESS_KEYS"))),
        "{main}"
    );
    assert!(
        v["account"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("GOOGLE_APPLICATION_CREDENTIALS")),
        "{v:#}"
    );

    // 4. A pod in an unlabelled namespace: the webhook was never called.
    created(off, &pod("plain", json!({}), json!({})), DryRun::No);
    let v = explain_json(&config, "pw-explain-off/plain");
    assert_eq!(v["live"]["verdict"], "namespace-not-selected", "{v:#}");
    assert_eq!(v["live"]["mutated"], false);
    assert!(
        v["live"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("never called the webhook")),
        "{v:#}"
    );
    // ...and what it would get now.
    assert_eq!(v["account"]["outcome"], "patched");

    // 5. An opted-out pod.
    let opted = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "opted", "labels": {"polyaxon.com/persistence-injection": "disabled"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}})
    .to_string();
    created(on, &opted, DryRun::No);
    let v = explain_json(&config, "pw-explain/opted");
    assert_eq!(v["live"]["verdict"], "opted-out", "{v:#}");
    assert_eq!(v["account"]["reason"], "opted-out");

    // 6. A pod created before the registration.
    let v = explain_json(&config, "pw-explain/early");
    assert_eq!(v["live"]["verdict"], "created-before-registration", "{v:#}");
    assert_eq!(v["live"]["mutated"], false);

    // 6b. Kept from the webhook by a shipped matchCondition: a mislabelled
    //     kube- namespace, and a static pod's mirror; explain names it.
    let system = "kube-pw-explain";
    namespace(system, true);
    created(system, &pod("system", json!({}), json!({})), DryRun::No);
    let v = explain_json(&config, "kube-pw-explain/system");
    assert_eq!(v["live"]["verdict"], "excluded-by-match-condition", "{v:#}");
    assert_eq!(
        v["live"]["match_condition"], "not-kubernetes-system-namespace",
        "{v:#}"
    );
    let mirror = pod(
        "mirror",
        json!({"kubernetes.io/config.mirror": "0123abcd"}),
        json!({"nodeName": "node-1"}),
    );
    let stored = created(on, &mirror, DryRun::No);
    assert!(injected(&stored).is_none(), "{stored}");
    let (code, text, err) = explain(&config, "pw-explain/mirror", "text");
    assert_eq!(code, 0, "{err}");
    assert!(
        text.starts_with("live pod pw-explain/mirror: excluded-by-match-condition\n")
            && text.contains("matchCondition not-mirror-pod of webhook persistence.polyaxon.com"),
        "{text}"
    );
    let _ = kubectl(&["delete", "namespace", system, "--wait=false"], None);

    // 7. A pod that does not exist: exit 2, naming it.
    let (code, _, err) = explain(&config, "pw-explain/nope", "text");
    assert_eq!(code, 2);
    assert!(err.contains("pod pw-explain/nope not found"), "{err}");

    // 8. RBAC: a user without get on pods (the admin impersonating
    //    nobody in particular) is refused: exit 2, saying so.
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let mut kc: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(&kubeconfig).expect("the kubeconfig is readable"),
    )
    .expect("the kubeconfig is YAML");
    for user in kc["users"].as_sequence_mut().into_iter().flatten() {
        user["user"]["as"] = serde_yaml::Value::from("pw-explain-nobody");
    }
    let nobody = dir.path().join("nobody.kubeconfig");
    std::fs::write(&nobody, serde_yaml::to_string(&kc).expect("YAML")).expect("write");
    let out = Command::new(BIN)
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG")
        .args(["explain", "--config"])
        .arg(&config)
        .args(["--pod", "pw-explain/train", "--kubeconfig"])
        .arg(&nobody)
        .output()
        .expect("explain runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("forbidden to read pod pw-explain/train"),
        "{err}"
    );

    eprintln!("e2e_explain: {:.1}s", started.elapsed().as_secs_f64());
}
