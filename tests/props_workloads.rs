//! Property: what `mutate` does to a workload's pod template is what the
//! server does to the pod the workload's controller creates from it
//! (SPEC §6). The pod is built here as each controller builds it (the
//! template's metadata and spec, the name or generateName, the controller
//! ownerReference), written independently of `src/offline/workload.rs`, reviewed
//! through the core's `review` exactly as the API server would send it,
//! patched, and compared with the template `mutate`'s code returned.

use persistence_webhook::offline::dry_run::{self, Setting};
use persistence_webhook::review::{review, Decision};
use persistence_webhook::{Bounds, Config};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const UID: &str = "7c0a3d2e-1111-4222-8333-944455556666";

fn config() -> Config {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/persistence.yaml"
    ))
    .expect("the example config");
    Config::from_yaml(&text).expect("the example config is valid")
}

#[derive(Debug, Clone)]
struct Plan {
    kind: &'static str,
    name: String,
    namespace: &'static str,
    selection: Option<&'static str>,
    subpath: Option<&'static str>,
    opt_out: bool,
    metadata: bool,
    containers: usize,
    init: bool,
    volumes: bool,
}

prop_compose! {
    fn plan()(
        kind in prop::sample::select(vec![
            "Job",
            "CronJob",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
        ]),
        name in "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        namespace in prop::sample::select(vec!["default", "team-a", "team-b"]),
        selection in prop::option::of(prop::sample::select(vec![
            "data: [data1]",
            "data: []\noutputs: outputs-gcs",
            "{\"data\": [\"data-s3\", \"scratch\"], \"outputs\": \"outputs-host\"}",
            "data: [team-a-data]",
            "data: [imagenet]",
            "containers: [main]",
            "outputs: [outputs1, outputs-s3]",
        ])),
        subpath in prop::option::weighted(0.2, prop::sample::select(vec!["runs/7", "../escape"])),
        opt_out in prop::bool::weighted(0.1),
        metadata in prop::bool::weighted(0.8),
        containers in 1..=3usize,
        init in any::<bool>(),
        volumes in any::<bool>(),
    ) -> Plan {
        Plan {
            kind, name, namespace, selection, subpath,
            opt_out, metadata, containers, init, volumes,
        }
    }
}

/// The template, and the workload object holding it.
fn workload(p: &Plan) -> (Value, Value) {
    let mut meta = Map::new();
    let mut annotations = Map::new();
    if let Some(s) = p.selection {
        annotations.insert("polyaxon.com/persistence".into(), json!(s));
    }
    if let Some(s) = p.subpath {
        annotations.insert("polyaxon.com/outputs-subpath".into(), json!(s));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    let mut labels = json!({"app": p.name});
    if p.opt_out {
        labels["polyaxon.com/persistence-injection"] = json!("disabled");
    }
    meta.insert("labels".into(), labels);
    let names = ["main", "sidecar", "logger"];
    let containers: Vec<Value> = names[..p.containers]
        .iter()
        .map(|n| json!({"name": n, "image": "busybox", "env": [{"name": "A", "value": "1"}]}))
        .collect();
    let mut spec = json!({"containers": containers, "restartPolicy": "Never"});
    if p.init {
        spec["initContainers"] = json!([{"name": "fetch", "image": "busybox"}]);
    }
    if p.volumes {
        spec["volumes"] = json!([{"name": "cache", "emptyDir": {}}]);
    }
    let template = if p.metadata || p.selection.is_some() || p.subpath.is_some() || p.opt_out {
        json!({"metadata": meta, "spec": spec})
    } else {
        json!({"spec": spec})
    };
    let (api, spec) = match p.kind {
        "Job" => ("batch/v1", json!({"template": template})),
        "CronJob" => (
            "batch/v1",
            json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}),
        ),
        _ => (
            "apps/v1",
            json!({"selector": {"matchLabels": {"app": p.name}}, "template": template}),
        ),
    };
    let object = json!({"apiVersion": api, "kind": p.kind,
        "metadata": {"name": p.name, "namespace": p.namespace}, "spec": spec});
    (template, object)
}

/// The pod the controller creates: Job pods `<job>-` owned by the Job; a
/// CronJob's Job `<cronjob>-<minutes>`; a Deployment's ReplicaSet
/// `<deployment>-<hash>`; StatefulSet pods `<sts>-<ordinal>`.
fn controller_pod(p: &Plan, template: &Value) -> Value {
    let (name, generate, owner_api, owner_kind, owner) = match p.kind {
        "Job" => (
            None,
            Some(format!("{}-", p.name)),
            "batch/v1",
            "Job",
            p.name.clone(),
        ),
        "CronJob" => {
            let job = format!("{}-xxxxxxxx", p.name);
            (None, Some(format!("{job}-")), "batch/v1", "Job", job)
        }
        "Deployment" => {
            let rs = format!("{}-xxxxxxxxxx", p.name);
            (None, Some(format!("{rs}-")), "apps/v1", "ReplicaSet", rs)
        }
        "StatefulSet" => (
            Some(format!("{}-0", p.name)),
            None,
            "apps/v1",
            "StatefulSet",
            p.name.clone(),
        ),
        kind => (
            None,
            Some(format!("{}-", p.name)),
            "apps/v1",
            kind,
            p.name.clone(),
        ),
    };
    let mut meta = template["metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(n) = name {
        meta.insert("name".into(), json!(n));
    }
    if let Some(g) = generate {
        meta.insert("generateName".into(), json!(g));
    }
    meta.insert("namespace".into(), json!(p.namespace));
    meta.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": owner_api, "kind": owner_kind, "name": owner,
            "uid": "u", "controller": true, "blockOwnerDeletion": true}]),
    );
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

fn admission(pod: &Value, namespace: &str) -> Vec<u8> {
    let mut request = json!({"uid": UID, "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace, "operation": "CREATE", "object": pod});
    if let Some(n) = pod["metadata"].get("name") {
        request["name"] = n.clone();
    }
    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
        .expect("serialises")
}

/// Checks one plan; returns the outcome label for coverage.
fn check(p: &Plan) -> Result<&'static str, TestCaseError> {
    let config = config();
    let (template, object) = workload(p);

    // The server's answer for the controller's pod.
    let pod = controller_pod(p, &template);
    let served = review(&config, &admission(&pod, p.namespace)).expect("an answerable review");
    let mut served_pod = pod.clone();
    if let Decision::Patched(patch) = &served.decision {
        json_patch::patch(&mut served_pod, patch.patch()).expect("the server's patch applies");
    }

    // `mutate`'s answer for the workload.
    let setting = Setting {
        config: &config,
        bounds: Bounds::default(),
        namespace: None,
        uid: UID,
    };
    let decided = dry_run::decide(&setting, &object).expect("a valid workload");
    prop_assert_eq!(decided.decision.outcome(), served.decision.outcome());
    prop_assert_eq!(decided.decision.reason(), served.decision.reason());
    let pointer = decided.template.expect("a workload has a template");
    let mutated = decided
        .object
        .pointer(pointer)
        .expect("the template is still there");

    prop_assert_eq!(&mutated["spec"], &served_pod["spec"]);
    let mutated_meta = mutated["metadata"].as_object().cloned().unwrap_or_default();
    for (key, value) in &mutated_meta {
        prop_assert_eq!(
            Some(value),
            served_pod["metadata"].get(key),
            "metadata.{}",
            key
        );
    }
    prop_assert_eq!(
        mutated_meta.get("annotations"),
        served_pod["metadata"].get("annotations"),
        "the annotations the server gives are on the template"
    );
    // Nothing outside the template changed.
    let mut outside = decided.object.clone();
    let mut given = object.clone();
    *outside.pointer_mut(pointer).expect("template") = Value::Null;
    *given.pointer_mut(pointer).expect("template") = Value::Null;
    prop_assert_eq!(outside, given);
    Ok(served.decision.outcome().as_str())
}

#[test]
fn a_mutated_template_is_what_the_server_gives_the_controllers_pod() {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    let seen: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    });
    runner
        .run(&plan(), |p| {
            let outcome = check(&p)?;
            let mut seen = seen.lock().expect("not poisoned");
            seen.insert(outcome.to_owned());
            seen.insert(p.kind.to_owned());
            if workload(&p).0.get("metadata").is_none() {
                seen.insert("template without metadata".to_owned());
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = seen.into_inner().expect("not poisoned");
    for want in [
        "patched",
        "unchanged",
        "denied",
        "Job",
        "CronJob",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "template without metadata",
    ] {
        assert!(
            seen.contains(want),
            "never generated: {want} (saw {seen:?})"
        );
    }
}
