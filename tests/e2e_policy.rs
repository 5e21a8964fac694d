//! End to end: policy mode (SPEC §10) against the webhook on a real
//! kube-apiserver. Every pod shape without a selection annotation is
//! created (server dry run: the object as the API server would store it)
//! once through the webhook alone and once through the policies
//! `persistence-webhook policy` prints, with the webhook not registered:
//! the two pods must be the same field for field and in order (uids and
//! generated names aside), and what the webhook denies the policies must
//! refuse with the same message. A bounded property test does the same
//! for random pods.
//!
//! Ignored by default; `.ci/run` runs every `e2e*` file with `--ignored`.
//! Without a reachable API server it FAILS, loudly: it never skips.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeMap;

use cluster::*;
use serde_json::{json, Value};

/// Gets the stores every namespace the config does not name gets.
const NS: &str = "pw-e2e-policy";
/// Named by the config: a store of its own and another outputs store.
const TEAM: &str = "pw-e2e-policy-team";
const HOOK: &str = "pw-e2e-policy-hook";

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
  data-claim: {mountPath: /data/claim, existingClaim: data-claim, readOnly: true}
  data-gcs: {store: gcs, bucket: "gs://data-bucket", secret: gcs-secret, secretKey: gcs-key.json}
  data-s3: {store: s3, bucket: "s3://data-bucket/x", secret: s3-secret, secretKey: s3-key.json, accessKeyIdKey: id, secretAccessKeyKey: key, region: us-east-1, endpoint: "http://minio.storage:9000"}
  team-data: {mountPath: /data/team, namespaces: [pw-e2e-policy-team]}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
  outputs-gcs: {store: gcs, bucket: "gs://outputs-bucket/", secret: gcs-secret, secretKey: gcs-key.json, namespaces: [pw-e2e-policy-team], isolateNamespaces: true}
defaultOutputs: outputs-gcs
"#;

/// A container running nothing (the pods are never scheduled).
fn container(name: &str, extra: Value) -> Value {
    let mut c = json!({"name": name, "image": "busybox:1.36", "command": ["sleep", "3600"]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn pod_of(name: &str, meta: Value, spec: Value) -> String {
    let mut metadata = meta;
    if let Some(prefix) = name.strip_suffix('*') {
        metadata["generateName"] = json!(prefix);
    } else {
        metadata["name"] = json!(name);
    }
    let mut full = json!({"containers": [container("main", json!({}))]});
    if let (Some(full), Some(spec)) = (full.as_object_mut(), spec.as_object()) {
        for (k, v) in spec {
            full.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": full}).to_string()
}

/// The shapes the golden and property tests use, without a selection
/// annotation: (case, pod manifest).
fn shapes() -> Vec<(&'static str, String)> {
    let ann = |k: &str, v: &str| json!({"annotations": {k: v}});
    let job_owner = json!({"ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "0e5b9a1c-4d0f-4a43-9b7e-5d8a3f2c1b00", "controller": true, "blockOwnerDeletion": true}]});
    vec![
        ("bare", pod_of("bare", json!({}), json!({}))),
        ("generate-name", pod_of("gen-*", json!({}), json!({}))),
        ("job-pod", pod_of("train-*", job_owner, json!({}))),
        (
            "outputs-subpath",
            pod_of(
                "sub",
                ann("polyaxon.com/outputs-subpath", "runs/7"),
                json!({}),
            ),
        ),
        (
            "unique-name",
            pod_of(
                "uniq",
                ann("polyaxon.com/unique-name", "user.project.42"),
                json!({}),
            ),
        ),
        (
            "unique-name-group",
            pod_of(
                "uniq-g",
                ann("polyaxon.com/unique-name", "user.project.7.42"),
                json!({}),
            ),
        ),
        (
            "unique-name-jobs",
            pod_of(
                "uniq-j",
                ann("polyaxon.com/unique-name", "user.project.jobs.5"),
                json!({}),
            ),
        ),
        (
            "init-and-sidecar",
            pod_of(
                "init",
                json!({}),
                json!({"initContainers": [
                container("fetch", json!({"command": ["true"]})),
                container("proxy", json!({"restartPolicy": "Always"}))
            ], "containers": [container("main", json!({})), container("second", json!({"env": [{"name": "A", "value": "1"}]}))]}),
            ),
        ),
        (
            "own-volume-name",
            pod_of(
                "ownvol",
                json!({}),
                json!({"volumes": [{"name": "pw-data1", "emptyDir": {}}],
                "containers": [container("main", json!({"volumeMounts": [{"name": "pw-data1", "mountPath": "/scratch"}]}))]}),
            ),
        ),
        (
            "sdk-own-variables",
            pod_of(
                "sdkown",
                json!({}),
                json!({"containers": [container("main", json!({"env": [{"name": "AWS_REGION", "value": "eu-west-1"}, {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/mine.json"}]}))]}),
            ),
        ),
        (
            "already-ours",
            pod_of(
                "ours",
                json!({}),
                json!({"containers": [container("main", json!({
                "env": [{"name": "POLYAXON_RUN_DATA_PATHS", "value": "{\"data-claim\":\"/data/claim\",\"data-gcs\":\"gs://data-bucket\",\"data-s3\":\"s3://data-bucket/x\",\"data1\":\"/data/1\"}"}],
                "volumeMounts": [{"name": "pw-data1", "mountPath": "/data/1", "readOnly": true}]}))],
                "volumes": [{"name": "pw-data1", "hostPath": {"path": "/mnt/data/1"}}]}),
            ),
        ),
        (
            "replayed-injected",
            pod_of(
                "replay",
                ann(
                    "polyaxon.com/persistence-injected",
                    r#"{"data":["data1"],"outputs":"outputs1","outputsPath":"/outputs/1/elsewhere/run-1"}"#,
                ),
                json!({}),
            ),
        ),
        (
            "opted-out",
            pod_of(
                "optout",
                json!({"labels": {"polyaxon.com/persistence-injection": "disabled"}}),
                json!({}),
            ),
        ),
        // Denials.
        (
            "deny-mount-conflict",
            pod_of(
                "mconf",
                json!({}),
                json!({"volumes": [{"name": "mine", "emptyDir": {}}],
                "containers": [container("main", json!({"volumeMounts": [{"name": "mine", "mountPath": "/data//1/"}]}))]}),
            ),
        ),
        (
            "deny-foreign-mount",
            pod_of(
                "foreign",
                json!({}),
                json!({"volumes": [{"name": "pw-data1", "hostPath": {"path": "/mnt/data/1"}}],
                "containers": [container("main", json!({"volumeMounts": [{"name": "pw-data1", "mountPath": "/elsewhere"}]}))]}),
            ),
        ),
        (
            "deny-env-conflict",
            pod_of(
                "econf",
                json!({}),
                json!({"initContainers": [container("init", json!({"command": ["true"], "env": [{"name": "POLYAXON_RUN_DATA_PATHS", "value": "{}"}]}))]}),
            ),
        ),
        (
            "deny-subpath-dotdot",
            pod_of("dd", ann("polyaxon.com/outputs-subpath", "../x"), json!({})),
        ),
        (
            "deny-subpath-absolute",
            pod_of(
                "abs",
                ann("polyaxon.com/outputs-subpath", "/abs"),
                json!({}),
            ),
        ),
        (
            "deny-subpath-empty-segment",
            pod_of("es", ann("polyaxon.com/outputs-subpath", "a//b"), json!({})),
        ),
        (
            "deny-subpath-backslash",
            pod_of(
                "bs",
                ann("polyaxon.com/outputs-subpath", "run\\7"),
                json!({}),
            ),
        ),
        (
            "deny-subpath-invisible",
            pod_of(
                "inv",
                ann("polyaxon.com/outputs-subpath", "a\u{200B}b"),
                json!({}),
            ),
        ),
        (
            "deny-subpath-control",
            pod_of(
                "ctl",
                ann("polyaxon.com/outputs-subpath", "a\tb"),
                json!({}),
            ),
        ),
        (
            "deny-subpath-quote",
            pod_of(
                "quo",
                ann("polyaxon.com/outputs-subpath", "a\"b/../c"),
                json!({}),
            ),
        ),
        (
            "deny-subpath-long-element",
            pod_of(
                "long",
                ann("polyaxon.com/outputs-subpath", &"e".repeat(256)),
                json!({}),
            ),
        ),
        (
            "deny-subpath-too-long",
            pod_of(
                "toolong",
                ann("polyaxon.com/outputs-subpath", &["d"; 2100].join("/")),
                json!({}),
            ),
        ),
        (
            "deny-unique-name",
            pod_of(
                "badu",
                ann("polyaxon.com/unique-name", "not-a-run"),
                json!({}),
            ),
        ),
    ]
}

/// What the API server answered: the pod as it would store it, made
/// comparable (uids, timestamps and generated names replaced), or the
/// denial's message.
#[derive(Debug, PartialEq)]
enum Answer {
    Stored(String),
    Denied(String),
}

/// The first lines where two answers differ, with a line of context.
fn difference(a: &Answer, b: &Answer) -> String {
    let text = |x: &Answer| match x {
        Answer::Stored(s) => format!("stored:\n{s}"),
        Answer::Denied(m) => format!("denied: {m}"),
    };
    let (a, b) = (text(a), text(b));
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let Some(first) = (0..la.len().max(lb.len())).find(|&i| la.get(i) != lb.get(i)) else {
        return "(same lines)".to_owned();
    };
    let from = first.saturating_sub(2);
    let show = |l: &[&str]| l[from.min(l.len())..(first + 6).min(l.len())].join("\n");
    format!(
        "at line {}:\n--- webhook\n{}\n--- policy\n{}",
        first + 1,
        show(&la),
        show(&lb)
    )
}

fn denial_message(stderr: &str) -> String {
    for marker in ["denied the request: ", "denied request: "] {
        if let Some(at) = stderr.find(marker) {
            return stderr[at + marker.len()..].trim().to_owned();
        }
    }
    format!("(no denial) {stderr}")
}

fn answer(ns: &str, manifest: &str) -> Answer {
    let (ok, out, err) = create(ns, manifest, DryRun::Yes);
    if ok {
        Answer::Stored(comparable(
            serde_json::from_str(&out).expect("kubectl -o json prints JSON"),
        ))
    } else {
        Answer::Denied(denial_message(&err))
    }
}

fn policies() -> String {
    policy_objects(CONFIG, &[])
}

fn apply_policies() -> PoliciesApplied {
    kubectl_ok(&["apply", "-f", "-"], Some(&policies()));
    let applied = PoliciesApplied("persistence-webhook");
    // The API server picks policies up asynchronously: wait until the
    // mutating one mutates and the validating one refuses.
    common::eventually_blocking("the policies mutate and refuse", || {
        let (ok, out, _) = create(NS, &pod("probe", json!({}), json!({})), DryRun::Yes);
        let mutated = ok && out.contains("POLYAXON_RUN_DATA_PATHS");
        let deny = pod_of(
            "probe-deny",
            json!({"annotations": {"polyaxon.com/outputs-subpath": "/abs"}}),
            json!({}),
        );
        let (ok_deny, _, err) = create(NS, &deny, DryRun::Yes);
        mutated && !ok_deny && err.contains("must be relative")
    });
    applied
}

/// Both paths for every (namespace, case, manifest): the webhook's answers,
/// then the policies'.
fn both_paths(cases: &[(String, String, String)]) -> Vec<(String, String, Answer, Answer)> {
    let by_webhook: Vec<Answer> = {
        let (_hook, _registered) = serve_registered(CONFIG, HOOK, NS);
        cases.iter().map(|(ns, _, m)| answer(ns, m)).collect()
    };
    // The registration is gone: wait until the API server stops calling it.
    unregister(HOOK);
    common::eventually_blocking("the webhook is no longer called", || {
        let (ok, out, _) = create(NS, &pod("probe", json!({}), json!({})), DryRun::Yes);
        ok && !out.contains("POLYAXON_RUN_DATA_PATHS")
    });
    let by_policy: Vec<Answer> = {
        let _applied = apply_policies();
        cases.iter().map(|(ns, _, m)| answer(ns, m)).collect()
    };
    cases
        .iter()
        .zip(by_webhook.into_iter().zip(by_policy))
        .map(|((ns, case, m), (w, p))| (format!("{ns}/{case}"), m.clone(), w, p))
        .collect()
}

/// What the policies refuse by design where the webhook stores the pod: a
/// generateName pod whose sub-path needs the admission uid, which CEL in
/// admission policies does not see (in a namespace with an outputs store).
const NO_UID: &str = "admission policies do not see the admission uid";

/// A generateName pod whose sub-path rule 3 gives `<generateName><uid>`:
/// no name, no sub-path annotation, no recorded path, no Job controlling it
/// (both namespaces of this test have an outputs store).
fn needs_uid(manifest: &str) -> bool {
    let pod: Value = serde_json::from_str(manifest).expect("the cases are JSON");
    let meta = &pod["metadata"];
    let annotations = &meta["annotations"];
    let job = meta["ownerReferences"].as_array().is_some_and(|refs| {
        refs.iter()
            .any(|r| r["kind"] == "Job" && r["controller"] == true)
    });
    meta["name"].is_null()
        && !job
        && annotations["polyaxon.com/outputs-subpath"].is_null()
        && annotations["polyaxon.com/unique-name"].is_null()
        && annotations["polyaxon.com/persistence-injected"].is_null()
        && pod["metadata"]["labels"]["polyaxon.com/persistence-injection"] != "disabled"
}

fn report(results: &[(String, String, Answer, Answer)]) {
    let mut failed = Vec::new();
    for (case, manifest, webhook, policy) in results {
        if needs_uid(manifest) {
            if !matches!(policy, Answer::Denied(m) if m.contains(NO_UID)) {
                failed.push(format!(
                    "{case}: the policy should refuse it ({NO_UID}): {policy:?}"
                ));
            }
            continue;
        }
        if webhook != policy {
            failed.push(format!("{case}: {}", difference(webhook, policy)));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases differ:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n\n")
    );
}

#[test]
#[ignore = "needs a Kubernetes 1.36+ API server (KUBECONFIG): tests/cluster/kube-local"]
fn policies_store_what_the_webhook_stores() {
    namespace(NS, true);
    namespace(TEAM, true);
    let mut cases = Vec::new();
    for ns in [NS, TEAM] {
        for (case, manifest) in shapes() {
            cases.push((ns.to_owned(), case.to_owned(), manifest));
        }
    }
    let results = both_paths(&cases);
    // The comparison proves something only if both kinds of answer occur.
    let denied = results
        .iter()
        .filter(|(_, _, w, _)| matches!(w, Answer::Denied(_)))
        .count();
    assert!(denied >= 10, "{denied} denials: {results:#?}");
    assert!(results.len() - denied >= 20, "{results:#?}");
    report(&results);
}

/// A small deterministic generator (xorshift), so a failure names a seed
/// that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn random_container(rng: &mut Rng, name: &str) -> Value {
    let mut env = Vec::new();
    let mut mounts = Vec::new();
    if rng.chance(30) {
        env.push(json!({"name": *rng.pick(&["A", "AWS_REGION", "AWS_ACCESS_KEY_ID", "STORAGE_EMULATOR_HOST", "POLYAXON_RUN_OUTPUTS_PATH"]), "value": "x"}));
    }
    if rng.chance(30) {
        mounts.push(json!({"name": "own", "mountPath": *rng.pick(&["/scratch", "/data/1", "/outputs/1", "/data/claim/", "/var/run/secrets/polyaxon.com/gcs"])}));
    }
    let mut extra = json!({});
    if !env.is_empty() {
        extra["env"] = json!(env);
    }
    if !mounts.is_empty() {
        extra["volumeMounts"] = json!(mounts);
    }
    container(name, extra)
}

fn random_pod(rng: &mut Rng, i: usize) -> String {
    let mut annotations = serde_json::Map::new();
    if rng.chance(25) {
        annotations.insert(
            "polyaxon.com/outputs-subpath".into(),
            json!(*rng.pick(&["r/1", "a b/ü", "x/../y", "ok", "deep/er/path"])),
        );
    }
    if rng.chance(25) {
        annotations.insert(
            "polyaxon.com/unique-name".into(),
            json!(*rng.pick(&["u.p.1", "u.p.2.3", "u.p.builds.4", "u.p", "u.p.x.y"])),
        );
    }
    let mut meta = json!({});
    if !annotations.is_empty() {
        meta["annotations"] = Value::Object(annotations);
    }
    if rng.chance(20) {
        meta["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": format!("job-{i}"), "uid": "0e5b9a1c-4d0f-4a43-9b7e-5d8a3f2c1b00", "controller": true}]);
    }
    let mut spec = json!({"volumes": [{"name": "own", "emptyDir": {}}]});
    if rng.chance(20) {
        spec["volumes"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": *rng.pick(&["pw-data1", "pw-outputs1", "pw--gcs-credentials"]), "emptyDir": {}}));
    }
    let containers: Vec<Value> = (0..1 + rng.next() % 3)
        .map(|c| random_container(rng, &format!("c{c}")))
        .collect();
    spec["containers"] = json!(containers);
    if rng.chance(40) {
        let mut init = random_container(rng, "init");
        if rng.chance(50) {
            init["restartPolicy"] = json!("Always");
        }
        spec["initContainers"] = json!([init]);
    }
    let name = if rng.chance(30) {
        format!("rnd{i}-*")
    } else {
        format!("rnd{i}")
    };
    pod_of(&name, meta, spec)
}

#[test]
#[ignore = "needs a Kubernetes 1.36+ API server (KUBECONFIG): tests/cluster/kube-local"]
fn random_pods_get_the_same_from_both_paths() {
    let seed: u64 = std::env::var("POLICY_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001);
    let count: usize = 40;
    namespace(NS, true);
    namespace(TEAM, true);
    let mut rng = Rng(seed);
    let cases: Vec<(String, String, String)> = (0..count)
        .map(|i| {
            let ns = if rng.chance(50) { NS } else { TEAM };
            (
                ns.to_owned(),
                format!("random-{i}"),
                random_pod(&mut rng, i),
            )
        })
        .collect();
    let results = both_paths(&cases);
    let outcomes: BTreeMap<&str, usize> = results.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(match r.2 {
            Answer::Stored(_) => "stored",
            Answer::Denied(_) => "denied",
        })
        .or_default() += 1;
        m
    });
    eprintln!("seed {seed:#x}: {outcomes:?}");
    report(&results);
}
