use super::diff::*;
use super::wanted::*;
use super::*;
use crate::config::Config;
use crate::pod::PodView;
use crate::selection::{resolve, PodIdentity};
use crate::vocabulary::*;
use json_patch::PatchOperation;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /d1, readOnly: true}
  data2: {mountPath: /data/2, existingClaim: d2, readOnly: true}
  data-gcs: {store: gcs, bucket: gs://data-bucket, secret: gcs-secret, secretKey: gcs-key.json}
  data-gcs2: {store: gcs, bucket: gs://data-bucket-2, secret: gcs-secret-2, secretKey: gcs-key-2.json}
  data-s3: {store: s3, bucket: s3://data-bucket, secret: s3-secret, secretKey: s3-key.json}
outputs:
  outputs1: {mountPath: /outputs/1, existingClaim: o1}
  outputs-gcs: {store: gcs, bucket: gs://outputs-bucket/, secret: gcs-out, secretKey: gcs-out.json}
  outputs-nested: {mountPath: /data}
defaultOutputs: outputs1
"#;

/// Patches `pod` (JSON) with `selection` (the annotation) and returns the
/// patch and the patched pod, or the conflict.
fn run(pod: &str, selection: Option<&str>) -> Result<(Vec<PatchOperation>, Value), Conflict> {
    run_with(CONFIG, pod, selection)
}

fn run_with(
    config: &str,
    pod: &str,
    selection: Option<&str>,
) -> Result<(Vec<PatchOperation>, Value), Conflict> {
    let config = Config::from_yaml(config).expect("valid test config");
    let mut doc: Value = serde_json::from_str(pod).expect("test pod is JSON");
    if let Some(sel) = selection {
        let meta = doc["metadata"].as_object_mut().expect("metadata");
        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
        ann["polyaxon.com/persistence"] = Value::String(sel.to_owned());
    }
    let text = doc.to_string();
    let view: PodView = serde_json::from_str(&text).expect("view");
    let names = view.container_names();
    let annotations = view.annotations();
    let injected = annotations.injected_outputs_path();
    let identity = PodIdentity {
        namespace: "ns",
        name: Some("pod"),
        generate_name: None,
        job: None,
        uid: "u",
    };
    let sel = resolve(&config, identity, &annotations, injected.as_deref(), &names)
        .expect("selection resolves");
    let wanted = wanted(&sel)?;
    let patch = build(&view, &sel, &wanted)?;
    if let Some(p) = &patch {
        let (containers, max_index) = targeted(&view, &sel);
        let estimate = wanted.estimate(containers, max_index);
        let bytes = serde_json::to_vec(p).expect("patch").len() as u64;
        assert!(
            bytes <= estimate.bytes,
            "estimate {estimate:?} < {bytes} bytes"
        );
    }
    let ops = patch.map(|p| p.0).unwrap_or_default();
    json_patch::patch(&mut doc, &ops).expect("patch applies");
    Ok((ops, doc))
}

fn env_of(pod: &Value, list: &str, i: usize) -> BTreeMap<String, Value> {
    pod["spec"][list][i]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn mount_paths(pod: &Value, list: &str, i: usize) -> Vec<String> {
    pod["spec"][list][i]["volumeMounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["mountPath"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

const BARE: &str = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main"}]}}"#;

#[test]
fn bare_pod_gets_parents_first() {
    let config = "data: {data1: {mountPath: /data/1, hostPath: /d1, readOnly: true}}\noutputs: {outputs1: {mountPath: /outputs/1, existingClaim: o1}}";
    let (ops, pod) = run_with(config, BARE, None).expect("ok");
    let paths: Vec<String> = ops
        .iter()
        .map(|op| match op {
            PatchOperation::Add(a) => a.path.to_string(),
            other => panic!("only adds expected, got {other:?}"),
        })
        .collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations",
            "/spec/volumes",
            "/spec/containers/0/volumeMounts",
            "/spec/containers/0/env"
        ]
    );
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([
            {"name": "pw-data1", "mountPath": "/data/1", "readOnly": true},
            {"name": "pw-outputs1", "mountPath": "/outputs/1/ns/pod", "subPath": "ns/pod"}
        ])
    );
    let env = env_of(&pod, "containers", 0);
    assert_eq!(
        env[ENV_DATA_PATHS]["value"],
        json!(r#"{"data1":"/data/1"}"#)
    );
    assert_eq!(env[ENV_OUTPUTS_PATH]["value"], json!("/outputs/1/ns/pod"));
    assert!(
        !env.contains_key(ENV_ACCESS_KEYS),
        "no cloud store, no access keys"
    );
    assert_eq!(
        pod["metadata"]["annotations"][ANNOTATION_INJECTED],
        json!(r#"{"data":["data1"],"outputs":"outputs1","outputsPath":"/outputs/1/ns/pod"}"#)
    );
}

#[test]
fn existing_lists_are_appended_and_keys_escaped() {
    let pod = r#"{"metadata":{"name":"pod","annotations":{"a/b~c":"x"}},
            "spec":{"volumes":[{"name":"own","emptyDir":{}}],
            "containers":[{"name":"main","env":[{"name":"A","value":"1"}],"volumeMounts":[{"name":"own","mountPath":"/own"}]}]}}"#;
    let (ops, out) = run(pod, Some("data: [data2]")).expect("ok");
    let first = serde_json::to_value(&ops[0]).expect("op");
    assert_eq!(
        first["path"],
        json!("/metadata/annotations/polyaxon.com~1persistence-injected")
    );
    assert_eq!(out["metadata"]["annotations"]["a/b~c"], json!("x"));
    assert_eq!(out["spec"]["volumes"][0]["name"], json!("own"));
    assert_eq!(
        out["spec"]["volumes"][1],
        json!({"name": "pw-data2", "persistentVolumeClaim": {"claimName": "d2", "readOnly": true}})
    );
    assert_eq!(
        mount_paths(&out, "containers", 0),
        ["/own", "/data/2", "/outputs/1/ns/pod"]
    );
    assert_eq!(
        out["spec"]["containers"][0]["env"][0],
        json!({"name": "A", "value": "1"})
    );
}

#[test]
fn cloud_env_and_gcs_credentials() {
    let (_, pod) = run(
        BARE,
        Some("data: [data-gcs2, data-gcs, data-s3, data1]\noutputs: outputs-gcs"),
    )
    .expect("ok");
    let env = env_of(&pod, "containers", 0);
    assert_eq!(
        env[ENV_DATA_PATHS]["value"],
        json!(
            r#"{"data-gcs":"gs://data-bucket","data-gcs2":"gs://data-bucket-2","data-s3":"s3://data-bucket","data1":"/data/1"}"#
        )
    );
    assert_eq!(
        env[ENV_OUTPUTS_PATH]["value"],
        json!("gs://outputs-bucket/ns/pod")
    );
    let keys: Value = serde_json::from_str(env[ENV_ACCESS_KEYS]["value"].as_str().expect("string"))
        .expect("access keys are JSON");
    assert_eq!(
        keys,
        json!({
            "gs://data-bucket": {"store": "gcs", "secret_key": "gcs-key.json"},
            "gs://data-bucket-2": {"store": "gcs", "secret_key": "gcs-key-2.json"},
            "s3://data-bucket": {"store": "s3", "secret_key": "s3-key.json"},
            "gs://outputs-bucket/ns/pod": {"store": "gcs", "secret_key": "gcs-out.json"},
        })
    );
    for (key, secret) in [
        ("gcs-key.json", "gcs-secret"),
        ("gcs-key-2.json", "gcs-secret-2"),
        ("s3-key.json", "s3-secret"),
        ("gcs-out.json", "gcs-out"),
    ] {
        assert_eq!(
            env[key]["valueFrom"],
            json!({"secretKeyRef": {"name": secret, "key": key}}),
            "{key}"
        );
    }
    // The outputs store's key is the default credential.
    assert_eq!(
        env[ENV_GOOGLE_CREDENTIALS]["value"],
        json!("/var/run/secrets/polyaxon.com/gcs/gcs-out.json")
    );
    let creds = pod["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == GCS_CREDENTIALS_VOLUME))
        .expect("credentials volume");
    assert_eq!(
        creds["secret"],
        json!({"secretName": "gcs-out", "items": [{"key": "gcs-out.json", "path": "gcs-out.json"}]})
    );
    assert!(mount_paths(&pod, "containers", 0).contains(&GCS_CREDENTIALS_DIR.to_owned()));
}

#[test]
fn first_gcs_data_store_by_name_is_the_default_credential() {
    let (_, pod) = run(BARE, Some("data: [data-gcs2, data-gcs]\noutputs: outputs1")).expect("ok");
    let env = env_of(&pod, "containers", 0);
    assert_eq!(
        env[ENV_GOOGLE_CREDENTIALS]["value"],
        json!("/var/run/secrets/polyaxon.com/gcs/gcs-key.json")
    );
}

#[test]
fn no_stores_still_sets_empty_data_paths() {
    let (_, doc) = run_with("data:\noutputs:\n", BARE, None).expect("patched");
    assert_eq!(
        doc["spec"]["containers"][0]["env"],
        json!([{"name": ENV_DATA_PATHS, "value": "{}"}])
    );
    assert!(
        doc["spec"].get("volumes").is_none(),
        "no volume stores, no volumes list"
    );
}

#[test]
fn containers_subset_and_init_containers() {
    let pod = r#"{"metadata":{"name":"pod"},"spec":{"initContainers":[{"name":"init"}],"containers":[{"name":"main"},{"name":"side"}]}}"#;
    let (_, all) = run(pod, Some("data: [data1]")).expect("ok");
    assert!(env_of(&all, "initContainers", 0).contains_key(ENV_DATA_PATHS));
    assert!(env_of(&all, "containers", 1).contains_key(ENV_DATA_PATHS));
    let (_, some) = run(pod, Some("data: [data1]\ncontainers: [init, main]")).expect("ok");
    assert!(env_of(&some, "initContainers", 0).contains_key(ENV_DATA_PATHS));
    assert!(env_of(&some, "containers", 0).contains_key(ENV_DATA_PATHS));
    assert_eq!(some["spec"]["containers"][1], json!({"name": "side"}));
}

#[test]
fn second_admission_is_a_no_op() {
    for sel in [
        "data: [data1, data-gcs]\noutputs: outputs-gcs",
        "data: []",
        "outputs: outputs1",
    ] {
        let (_, once) = run(BARE, Some(sel)).expect("ok");
        let (ops, twice) = run(&once.to_string(), None).expect("ok");
        assert!(ops.is_empty(), "{sel}: second patch {ops:?}");
        assert_eq!(once, twice);
    }
}

#[test]
fn conflicts_are_denied_with_container_and_field() {
    let cases = [
            (
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","volumeMounts":[{"name":"mine","mountPath":"/data/1/"}]}]}}"#,
                "data: [data1]",
                "container \"main\": volumeMounts already has \"/data/1\" (volume \"mine\"), where data store \"data1\" must be mounted",
            ),
            (
                // Regression (fuzz: review_structured-double-slash-mount).
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","volumeMounts":[{"name":"mine","mountPath":"/data//1/./"}]}]}}"#,
                "data: [data1]",
                "volumeMounts already has \"/data/1\" (volume \"mine\")",
            ),
            (
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"POLYAXON_RUN_OUTPUTS_PATH","value":"/elsewhere"}]}]}}"#,
                "data: []",
                "container \"main\": env POLYAXON_RUN_OUTPUTS_PATH is already set to a different value; the webhook sets it to \"/outputs/1/ns/pod\"",
            ),
            (
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"gcs-key.json","valueFrom":{"secretKeyRef":{"name":"other","key":"gcs-key.json"}}}]}]}}"#,
                "data: [data-gcs]",
                "env gcs-key.json is already set to a different value; the webhook sets it to key \"gcs-key.json\" of secret \"gcs-secret\"",
            ),
            (
                r#"{"metadata":{"name":"pod"},"spec":{"volumes":[{"name":"pw-data1","emptyDir":{}}],"containers":[{"name":"main"}]}}"#,
                "data: [data1]",
                "spec.volumes already has a volume named \"pw-data1\"",
            ),
            (BARE, "data: [data1]\noutputs: outputs-nested", ""),
        ];
    for (pod, sel, want) in cases {
        let result = run(pod, Some(sel));
        if want.is_empty() {
            // /data (outputs-nested + sub-path) does not collide with /data/1.
            assert!(result.is_ok(), "{sel}: {result:?}");
            continue;
        }
        let err = result.expect_err(sel).to_string();
        assert!(err.contains(want), "{sel}: {err}");
    }
}

/// A pod with one container `main` (targeted) and `side`, with `main`'s
/// and `side`'s mounts as given.
fn two_containers(main_mounts: Value, side_mounts: Value) -> String {
    json!({"metadata": {"name": "pod"}, "spec": {"containers": [
        {"name": "main", "volumeMounts": main_mounts},
        {"name": "side", "volumeMounts": side_mounts},
    ]}})
    .to_string()
}

#[test]
fn the_webhooks_volumes_are_mounted_only_as_the_webhook_mounts_them() {
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
            (
                "whole outputs store, no subPath",
                two_containers(json!([{"name": "pw-outputs1", "mountPath": "/all-outputs"}]), json!([])),
                "data: []",
                &[
                    "container \"main\": volumeMounts mounts the webhook's volume \"pw-outputs1\" (outputs store \"outputs1\") at \"/all-outputs\";",
                    "only the webhook mounts it, at \"/outputs/1/ns/pod\" with subPath \"ns/pod\"",
                ],
            ),
            (
                "another run's subPath",
                two_containers(json!([{"name": "pw-outputs1", "mountPath": "/theirs", "subPath": "ns/other-run"}]), json!([])),
                "data: []",
                &["mounts the webhook's volume \"pw-outputs1\" (outputs store \"outputs1\") at \"/theirs\" with subPath \"ns/other-run\""],
            ),
            (
                "another run's subPath at our own path",
                two_containers(json!([{"name": "pw-outputs1", "mountPath": "/outputs/1/ns/pod", "subPath": "ns/other-run"}]), json!([])),
                "data: []",
                &["at \"/outputs/1/ns/pod\" with subPath \"ns/other-run\""],
            ),
            (
                "read-only data store mounted read-write",
                two_containers(json!([{"name": "pw-data1", "mountPath": "/data/1"}]), json!([])),
                "data: [data1]",
                &[
                    "mounts the webhook's volume \"pw-data1\" (data store \"data1\") at \"/data/1\" read-write",
                    "only the webhook mounts it, at \"/data/1\" read-only",
                ],
            ),
            (
                "sidecar excluded by containers:",
                two_containers(json!([]), json!([{"name": "pw-outputs1", "mountPath": "/outputs/1/ns/pod", "subPath": "ns/pod"}])),
                "data: []\ncontainers: [main]",
                &[
                    "container \"side\": volumeMounts mounts the webhook's volume \"pw-outputs1\"",
                    "only in the containers that annotation polyaxon.com/persistence targets (containers:), which this one is not",
                ],
            ),
            (
                "the GCS credentials volume elsewhere",
                two_containers(json!([{"name": "pw--gcs-credentials", "mountPath": "/keys"}]), json!([])),
                "data: [data-gcs]",
                &["the webhook's volume \"pw--gcs-credentials\" (the GCS credentials) at \"/keys\""],
            ),
            (
                "init container too",
                json!({"metadata": {"name": "pod"}, "spec": {
                    "initContainers": [{"name": "init", "volumeMounts": [{"name": "pw-data2", "mountPath": "/d2", "readOnly": true}]}],
                    "containers": [{"name": "main"}]}}).to_string(),
                "data: [data2]",
                &["container \"init\": volumeMounts mounts the webhook's volume \"pw-data2\" (data store \"data2\") at \"/d2\""],
            ),
        ];
    for (what, pod, sel, fragments) in cases {
        let err = run(&pod, Some(sel)).expect_err(what);
        assert!(
            matches!(err, Conflict::ForeignMount { .. }),
            "{what}: {err}"
        );
        let err = err.to_string();
        for f in fragments {
            assert!(err.contains(f), "{what}: {f:?} not in {err}");
        }
    }
    // A volume of a store this review does not select is the pod's own.
    let own = two_containers(
        json!([]),
        json!([{"name": "pw-data1", "mountPath": "/mine"}]),
    );
    let own = own.replace(
        r#""spec":{"#,
        r#""spec":{"volumes":[{"name":"pw-data1","emptyDir":{}}],"#,
    );
    assert!(
        run(&own, Some("data: [data2]")).is_ok(),
        "not ours in this review"
    );
    // Reinvocation: the pod already carries exactly our mounts.
    let sel = "data: [data1, data-gcs]\ncontainers: [main]";
    let (_, once) = run(&two_containers(json!([]), json!([])), Some(sel)).expect("patched");
    let (ops, _) = run(&once.to_string(), None).expect("re-admitted");
    assert!(ops.is_empty(), "{ops:?}");
}

#[test]
fn every_occurrence_of_an_env_var_of_ours_must_match() {
    let (_, once) = run(BARE, Some("data: [data1]")).expect("patched");
    let ours = once["spec"]["containers"][0]["env"][1].clone();
    assert_eq!(ours["name"], ENV_OUTPUTS_PATH);
    let with_env = |env: Value| {
        let mut pod = once.clone();
        pod["spec"]["containers"][0]["env"] = env;
        pod.to_string()
    };
    let data = once["spec"]["containers"][0]["env"][0].clone();
    let other = json!({"name": ENV_OUTPUTS_PATH, "value": "/elsewhere"});
    let cases = [
        (
            "ours then another: the runtime uses the last",
            json!([data, ours, other]),
            false,
        ),
        ("another then ours", json!([data, other, ours]), false),
        ("ours twice, same value", json!([data, ours, ours]), true),
    ];
    for (what, env, allowed) in cases {
        let result = run(&with_env(env), None);
        match (result, allowed) {
                (Ok((ops, _)), true) => assert!(ops.is_empty(), "{what}: {ops:?}"),
                (Err(e), false) => assert!(
                    e.to_string().contains("container \"main\": env POLYAXON_RUN_OUTPUTS_PATH is already set to a different value"),
                    "{what}: {e}"
                ),
                (got, _) => panic!("{what}: {got:?}"),
            }
    }
    // GOOGLE_APPLICATION_CREDENTIALS twice, any values: the container's own.
    let pod = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"GOOGLE_APPLICATION_CREDENTIALS","value":"/a"},{"name":"GOOGLE_APPLICATION_CREDENTIALS","value":"/b"}]}]}}"#;
    assert!(run(pod, Some("data: [data-gcs]")).is_ok());
}

#[test]
fn conflict_messages_are_clipped() {
    let long = "c".repeat(100_000);
    let pod = json!({"metadata": {"name": "pod"}, "spec": {"containers": [
            {"name": long, "volumeMounts": [{"name": "v".repeat(100_000), "mountPath": "/data/1"}]}]}});
    let err = run(&pod.to_string(), Some("data: [data1]"))
        .expect_err("conflict")
        .to_string();
    assert!(err.contains("(100000 bytes)"), "{err}");
    assert!(err.len() < 1024, "{} bytes", err.len());
}

#[test]
fn diffing_is_linear_in_the_pod() {
    // Not a timing: a container with 20,000 mounts and 20,000 env vars
    // against every wanted item would be a scan per item before; now one
    // lookup per mount and env var.
    let mounts: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("v{i}"), "mountPath": format!("/m/{i}")}))
        .collect();
    let env: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("E{i}"), "value": "x"}))
        .collect();
    let pod = json!({"metadata": {"name": "pod"}, "spec": {"containers": [
            {"name": "main", "volumeMounts": mounts, "env": env}]}});
    let (ops, out) = run(
        &pod.to_string(),
        Some("data: [data1, data2, data-gcs, data-s3]"),
    )
    .expect("patched");
    assert!(!ops.is_empty());
    assert_eq!(mount_paths(&out, "containers", 0).len(), 20_000 + 4);
}

#[test]
fn item_sizes_from_strings_are_the_serialised_sizes() {
    let odd = "q\"uo\\te\n\u{1}\u{7f}ünï/~";
    for sub in [None, Some("a/b"), Some(odd)] {
        for read_only in [false, true] {
            for (volume, path) in [("pw-data1", "/data/1"), (odd, odd)] {
                let m = want_mount(String::new(), volume, path, sub, read_only);
                let (est, real) = (m.json_bytes(), json_len(&m.json));
                assert_eq!(est, real, "{}", m.json);
            }
        }
    }
    for value in [
        EnvValue::Plain(String::new()),
        EnvValue::Plain(odd.to_owned()),
        EnvValue::Secret {
            secret: "s".into(),
            key: odd.into(),
        },
    ] {
        let e = want_env("POLYAXON_RUN_DATA_PATHS", value);
        let (est, real) = (e.json_bytes(), json_len(&e.json));
        assert_eq!(est, real, "{}", e.json);
    }
    assert_eq!(json_str_bytes(odd), json_len(&Value::String(odd.into())));
}

#[test]
fn the_estimate_bounds_the_patch() {
    for sel in [
        "data: [data1, data2, data-gcs, data-gcs2, data-s3]\noutputs: outputs-gcs",
        "data: []",
        "outputs: outputs1",
    ] {
        // `run_with` asserts the patch is within the estimate.
        let many: Vec<Value> = (0..120).map(|i| json!({"name": format!("c{i}")})).collect();
        let pod = json!({"metadata": {"name": "pod"}, "spec": {"initContainers": many.clone(), "containers": many}});
        let (ops, _) = run(&pod.to_string(), Some(sel)).expect("patched");
        assert!(ops.len() > 240, "{sel}");
    }
}

#[test]
fn own_mounts_colliding_are_denied() {
    let config = "data: {d: {mountPath: /o/ns/pod}}\noutputs: {o: {mountPath: /o}}";
    let err = run_with(config, BARE, None)
        .expect_err("collision")
        .to_string();
    assert!(
        err.contains(
            "data store \"d\" and outputs store \"o\" would both be mounted at \"/o/ns/pod\""
        ),
        "{err}"
    );
}

#[test]
fn volumes_defaulted_by_the_api_server_are_still_ours() {
    let defaulted = r#"{"metadata":{"name":"pod"},"spec":{"volumes":[{"name":"pw-data1","hostPath":{"path":"/d1","type":""}}],"containers":[{"name":"main"}]}}"#;
    let (ops, _) = run(defaulted, Some("data: [data1]")).expect("defaults are not a conflict");
    let added_again = ops.iter().any(|op| {
        let op = serde_json::to_value(op).expect("op");
        op["path"] == "/spec/volumes/-" && op["value"]["name"] == "pw-data1"
    });
    assert!(!added_again, "the volume is added twice: {ops:?}");
    let other = defaulted.replace("/d1", "/elsewhere");
    let err = run(&other, Some("data: [data1]")).expect_err("another path is a conflict");
    assert!(matches!(err, Conflict::Volume { .. }), "{err}");
    assert!(covers(
        &json!({"a": [1, {"b": 2, "c": 3}]}),
        &json!({"a": [1, {"b": 2}]})
    ));
    assert!(!covers(&json!({"a": [1]}), &json!({"a": [1, 2]})));
    assert!(!covers(&json!({}), &json!({"a": null})));
}

#[test]
fn own_google_credentials_are_kept() {
    let pod = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"GOOGLE_APPLICATION_CREDENTIALS","value":"/mine.json"}]}]}}"#;
    let (_, out) = run(pod, Some("data: [data-gcs]")).expect("ok");
    let env = env_of(&out, "containers", 0);
    assert_eq!(env[ENV_GOOGLE_CREDENTIALS]["value"], json!("/mine.json"));
    let count = out["spec"]["containers"][0]["env"].as_array().map(|e| {
        e.iter()
            .filter(|e| e["name"] == ENV_GOOGLE_CREDENTIALS)
            .count()
    });
    assert_eq!(count, Some(1));
}

#[test]
fn garbled_injected_annotation_is_replaced() {
    let pod = r#"{"metadata":{"name":"pod","annotations":{"polyaxon.com/persistence-injected":"garbage"}},"spec":{"containers":[{"name":"main"}]}}"#;
    let (_, out) = run(pod, Some("data: []")).expect("ok");
    assert_eq!(
        out["metadata"]["annotations"][ANNOTATION_INJECTED],
        json!(r#"{"data":[],"outputs":"outputs1","outputsPath":"/outputs/1/ns/pod"}"#)
    );
}
