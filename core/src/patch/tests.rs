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
    let sel = resolve(&config, identity, &annotations, injected.as_deref(), names)
        .expect("selection resolves");
    let pod_volumes = view
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let wanted = wanted(&sel, pod_volumes)?;
    let patch = build(&view, &sel, &wanted, &mut Vec::new(), 0)?;
    if let Some(p) = &patch {
        let (containers, max_index) = targeted(&view, &sel);
        let estimate = wanted.estimate(containers, max_index);
        let bytes = p.as_bytes().len() as u64;
        assert!(
            bytes <= estimate.bytes,
            "estimate {estimate:?} < {bytes} bytes"
        );
        // The bytes are serde_json's for the same operations.
        assert_eq!(
            p.as_bytes(),
            serde_json::to_vec(p.patch()).expect("patch"),
            "canonical"
        );
    }
    let ops = patch.map(|p| p.patch().0.clone()).unwrap_or_default();
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
    assert!(covers(
        &json!({"a": [1, {"b": 2, "c": 3}]}),
        &json!({"a": [1, {"b": 2}]})
    ));
    assert!(!covers(&json!({"a": [1]}), &json!({"a": [1, 2]})));
    assert!(!covers(&json!({}), &json!({"a": null})));
}

#[test]
fn a_pod_volume_of_our_name_with_other_content_moves_ours_to_another_name() {
    // The pod owns `pw-data1` (another host path) and `pw--2-data1`
    // (another again): the store's volume becomes `pw--3-data1`, mounted
    // under that name; the pod's own volumes are untouched; re-admitting
    // the patched pod gives no patch (SPEC §4: never denied over a name).
    let pod = r#"{"metadata":{"name":"pod"},"spec":{"volumes":[{"name":"pw-data1","hostPath":{"path":"/elsewhere"}},{"name":"pw--2-data1","emptyDir":{}}],"containers":[{"name":"main","volumeMounts":[{"name":"pw-data1","mountPath":"/mine"}]}]}}"#;
    let (_, out) = run(pod, Some("data: [data1]")).expect("never a conflict");
    let volumes = out["spec"]["volumes"].as_array().expect("volumes");
    let names: Vec<&str> = volumes.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(
        names,
        ["pw-data1", "pw--2-data1", "pw--3-data1", "pw-outputs1"]
    );
    assert_eq!(volumes[0]["hostPath"]["path"], json!("/elsewhere"));
    assert_eq!(volumes[2]["hostPath"]["path"], json!("/d1"));
    let mounts = out["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts");
    assert_eq!(mounts[0], json!({"name": "pw-data1", "mountPath": "/mine"}));
    assert_eq!(mounts[1]["name"], json!("pw--3-data1"));
    assert_eq!(mounts[1]["mountPath"], json!("/data/1"));
    let (again, _) = run(&out.to_string(), Some("data: [data1]")).expect("re-admitted");
    assert!(again.is_empty(), "re-admission patches again: {again:?}");
}

#[test]
fn alternate_volume_names_are_labels_apart_from_every_preferred_name() {
    use crate::names::{alternate_volume_name, is_dns1123_label, volume_name};
    let long = "a".repeat(63);
    for preferred in [
        volume_name("data1"),
        volume_name(&long),
        GCS_CREDENTIALS_VOLUME.to_owned(),
    ] {
        for n in [2, 3, 10, 4_000_000_000] {
            let alt = alternate_volume_name(&preferred, n);
            assert!(is_dns1123_label(&alt), "{alt}");
            assert!(alt.starts_with(&format!("pw--{n}-")), "{alt}");
            assert_ne!(alt, GCS_CREDENTIALS_VOLUME);
        }
    }
    assert_ne!(
        alternate_volume_name("pw-x", 2),
        alternate_volume_name("pw-x", 3)
    );
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

const SDK_CONFIG: &str = r#"
data:
  a-minio: {store: s3, bucket: s3://train, endpoint: "http://minio:9000", region: eu-west-1,
            secret: minio, secretKey: minio.json, accessKeyIdKey: id, secretAccessKeyKey: key, sessionTokenKey: token}
  b-s3: {store: s3, bucket: s3://other, secret: other, secretKey: other.json, accessKeyIdKey: id2, secretAccessKeyKey: key2}
  gcs-anon: {store: gcs, bucket: gs://public, endpoint: "http://gcs-emulator:4443"}
  gcs-keyed: {store: gcs, bucket: gs://private, secret: gcs, secretKey: gcs.json}
  blob: {store: azure, bucket: "wasbs://data@acct.blob.core.windows.net/", secret: az, secretKey: az.json, connectionStringKey: conn}
outputs:
  out-s3: {store: s3, bucket: s3://outputs, region: us-east-1}
  out-azure: {store: azure, bucket: "wasbs://out@acct2.blob.core.windows.net", secret: az2, secretKey: az2.json, accountKeyKey: account-key}
  out-volume: {mountPath: /outputs}
defaultOutputs: out-volume
"#;

fn sdk_run(pod: &str, selection: &str) -> Result<(Vec<PatchOperation>, Value), Conflict> {
    run_with(SDK_CONFIG, pod, Some(selection))
}

fn secret_ref(env: &BTreeMap<String, Value>, name: &str) -> (String, String) {
    let r = &env[name]["valueFrom"]["secretKeyRef"];
    (
        r["name"].as_str().unwrap_or_default().to_owned(),
        r["key"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn sdk_variables_come_from_each_providers_default_store() {
    // Data only: the first S3 data store by name (a-minio) is S3's default,
    // keyless gcs-anon is GCS's (it sorts before gcs-keyed), blob Azure's.
    let (_, pod) = sdk_run(
        BARE,
        "data: [b-s3, gcs-keyed, a-minio, gcs-anon, blob]\noutputs: out-volume",
    )
    .expect("ok");
    let env = env_of(&pod, "containers", 0);
    assert_eq!(
        secret_ref(&env, "AWS_ACCESS_KEY_ID"),
        ("minio".into(), "id".into())
    );
    assert_eq!(
        secret_ref(&env, "AWS_SECRET_ACCESS_KEY"),
        ("minio".into(), "key".into())
    );
    assert_eq!(
        secret_ref(&env, "AWS_SESSION_TOKEN"),
        ("minio".into(), "token".into())
    );
    assert_eq!(
        env["AWS_ENDPOINT_URL_S3"]["value"],
        json!("http://minio:9000")
    );
    assert_eq!(env["AWS_REGION"]["value"], json!("eu-west-1"));
    assert_eq!(env["AWS_DEFAULT_REGION"]["value"], json!("eu-west-1"));
    // GCS's default is keyless: no key file, whatever gcs-keyed holds.
    assert!(!env.contains_key(ENV_GOOGLE_CREDENTIALS), "{env:?}");
    assert_eq!(
        env["STORAGE_EMULATOR_HOST"]["value"],
        json!("http://gcs-emulator:4443")
    );
    assert_eq!(env["AZURE_STORAGE_ACCOUNT_NAME"]["value"], json!("acct"));
    assert_eq!(
        secret_ref(&env, "AZURE_STORAGE_CONNECTION_STRING"),
        ("az".into(), "conn".into())
    );
    assert!(!env.contains_key("AZURE_STORAGE_ACCOUNT_KEY"));
    // polystores keeps every keyed bucket; the keyless one has no entry.
    let keys: Value = serde_json::from_str(env[ENV_ACCESS_KEYS]["value"].as_str().expect("string"))
        .expect("JSON");
    let buckets: Vec<&String> = keys.as_object().expect("map").keys().collect();
    assert_eq!(
        buckets,
        [
            "gs://private",
            "s3://other",
            "s3://train",
            "wasbs://data@acct.blob.core.windows.net/"
        ]
    );
    // Both S3 stores' polystores credentials are referenced.
    assert_eq!(
        secret_ref(&env, "other.json"),
        ("other".into(), "other.json".into())
    );
    assert_eq!(
        secret_ref(&env, "minio.json"),
        ("minio".into(), "minio.json".into())
    );
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert!(volumes.iter().all(|v| v["name"] != GCS_CREDENTIALS_VOLUME));
}

#[test]
fn the_outputs_store_is_its_providers_default() {
    let (_, pod) = sdk_run(BARE, "data: [a-minio, blob]\noutputs: out-s3").expect("ok");
    let env = env_of(&pod, "containers", 0);
    // out-s3 is keyless with a region and no endpoint: its settings win,
    // a-minio's credentials and endpoint are not the SDKs' default.
    assert_eq!(env["AWS_REGION"]["value"], json!("us-east-1"));
    for absent in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_S3",
    ] {
        assert!(!env.contains_key(absent), "{absent}: {env:?}");
    }
    assert_eq!(env[ENV_OUTPUTS_PATH]["value"], json!("s3://outputs/ns/pod"));
    let keys: Value = serde_json::from_str(env[ENV_ACCESS_KEYS]["value"].as_str().expect("string"))
        .expect("JSON");
    assert!(
        keys.get("s3://outputs/ns/pod").is_none(),
        "keyless outputs in {keys}"
    );

    let (_, pod) = sdk_run(BARE, "data: [blob]\noutputs: out-azure").expect("ok");
    let env = env_of(&pod, "containers", 0);
    assert_eq!(env["AZURE_STORAGE_ACCOUNT_NAME"]["value"], json!("acct2"));
    assert_eq!(
        secret_ref(&env, "AZURE_STORAGE_ACCOUNT_KEY"),
        ("az2".into(), "account-key".into())
    );
    assert!(!env.contains_key("AZURE_STORAGE_CONNECTION_STRING"));
}

#[test]
fn only_keyless_stores_reference_no_secret_at_all() {
    let (_, pod) = sdk_run(BARE, "data: [gcs-anon]\noutputs: out-s3").expect("ok");
    let env = env_of(&pod, "containers", 0);
    assert!(!env.contains_key(ENV_ACCESS_KEYS), "{env:?}");
    assert!(
        env.values().all(|e| e.get("valueFrom").is_none()),
        "{env:?}"
    );
    assert!(pod["spec"].get("volumes").is_none(), "{pod}");
    assert_eq!(
        env[ENV_DATA_PATHS]["value"],
        json!(r#"{"gcs-anon":"gs://public"}"#)
    );
}

#[test]
fn a_containers_own_sdk_variables_are_kept_by_group_and_the_rest_added() {
    let pod = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[
        {"name":"AWS_REGION","value":"ap-south-1"},
        {"name":"AWS_ACCESS_KEY_ID","valueFrom":{"secretKeyRef":{"name":"mine","key":"id"}}},
        {"name":"STORAGE_EMULATOR_HOST","value":"http://mine:1"}]}]}}"#;
    let (ops, out) = sdk_run(pod, "data: [a-minio, gcs-anon]").expect("kept, never a conflict");
    let env = env_of(&out, "containers", 0);
    assert_eq!(env["AWS_REGION"]["value"], json!("ap-south-1"));
    assert_eq!(
        secret_ref(&env, "AWS_ACCESS_KEY_ID"),
        ("mine".into(), "id".into())
    );
    assert_eq!(
        env["STORAGE_EMULATOR_HOST"]["value"],
        json!("http://mine:1")
    );
    // A group is kept whole: no half credential, no second region.
    for absent in [
        "AWS_DEFAULT_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(!env.contains_key(absent), "{absent}: {env:?}");
    }
    assert_eq!(
        env["AWS_ENDPOINT_URL_S3"]["value"],
        json!("http://minio:9000")
    );
    let names: Vec<&str> = out["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate env names: {names:?}");
    assert!(!ops.is_empty());
    let (again, _) = sdk_run(&out.to_string(), "data: [a-minio, gcs-anon]").expect("re-admitted");
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn polyaxon_variables_still_conflict() {
    // Only the SDK variables yield; the Polyaxon ones and the polystores
    // credential variables are the run's contract and never overwritten.
    let pod = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[
        {"name":"minio.json","value":"x"}]}]}}"#;
    let err = sdk_run(pod, "data: [a-minio]").expect_err("conflict");
    assert!(matches!(err, Conflict::Env { .. }), "{err:?}");
    assert_eq!(err.field(), "spec.containers[0].env[minio.json]");
}
