//! Verdicts of `probe` on built objects.

use super::*;
use crate::cluster::check::objects::MatchCondition;
use crate::cluster::check::report::Status;
use serde_json::Map;

fn labels_of(pod: &Value) -> Map<String, Value> {
    pod["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
  data-gcs: {store: gcs, bucket: "gs://data-bucket", secret: gcs-secret, secretKey: gcs-key.json}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
defaultOutputs: outputs1
"#;

/// The baseline as a 1.20 API server returns it: defaults and the
/// ServiceAccount token volume added, the opt-out label on.
fn baseline() -> Value {
    let mut p = pod(DEFAULT_IMAGE, true, &Probe::PLAIN);
    p["metadata"]["namespace"] = json!("team-a");
    p["metadata"]["uid"] = json!("0b6c-uid");
    p["spec"]["serviceAccountName"] = json!("default");
    p["spec"]["volumes"] = json!([{"name": "kube-api-access-abcde", "projected": {"sources": []}}]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]);
    p["spec"]["containers"][0]["terminationMessagePath"] = json!("/dev/termination-log");
    p
}

fn predicted() -> Value {
    let config = Config::from_yaml(CONFIG).expect("valid");
    match predict(&config, &Bounds::default(), &baseline(), "team-a").expect("predicts") {
        Expected::Patched(p) => p,
        other => panic!("{other:?}"),
    }
}

/// What the API server stores: the prediction, with another token
/// volume name, defaults on our secret volume, and another plugin's env.
fn stored() -> Value {
    let mut p = predicted();
    let rename = |v: &mut Value| {
        if v["name"] == "kube-api-access-abcde" {
            v["name"] = json!("kube-api-access-xyz12");
        }
    };
    for v in p["spec"]["volumes"].as_array_mut().into_iter().flatten() {
        rename(v);
        if v["secret"].is_object() {
            v["secret"]["defaultMode"] = json!(420);
        }
    }
    for m in p["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        rename(m);
    }
    if let Some(env) = p["spec"]["containers"][0]["env"].as_array_mut() {
        env.push(json!({"name": "ISTIO_META", "value": "x"}));
    }
    p
}

fn target() -> Webhook<'static> {
    Webhook {
        webhook_namespace: "pw",
        webhook_name: "persistence-webhook",
        conditions: &[],
        probe: &Probe::PLAIN,
    }
}

/// A hybrid install's webhook probe: the pod carries the selection `{}`,
/// which selects what no annotation does, so the webhook's patch is the
/// plain probe's; its verdict is reported under its own id.
#[test]
fn the_annotated_probe_selects_what_no_annotation_does_under_its_own_id() {
    let config = Config::from_yaml(CONFIG).expect("valid");
    let annotated = |opted_out| {
        let mut p = pod(DEFAULT_IMAGE, opted_out, &Probe::ANNOTATED);
        p["metadata"]["namespace"] = json!("team-a");
        p
    };
    assert_eq!(
        annotated(false)["metadata"]["annotations"][ANNOTATION_PERSISTENCE],
        "{}"
    );
    assert!(pod(DEFAULT_IMAGE, false, &Probe::PLAIN)["metadata"]
        .get("annotations")
        .is_none());
    let plain = |opted_out| {
        let mut p = pod(DEFAULT_IMAGE, opted_out, &Probe::PLAIN);
        p["metadata"]["namespace"] = json!("team-a");
        p
    };
    let patched = |baseline: &Value| match predict(&config, &Bounds::default(), baseline, "team-a")
    {
        Ok(Expected::Patched(p)) => p["spec"].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(patched(&annotated(true)), patched(&plain(true)));
    let stored = match predict(&config, &Bounds::default(), &annotated(true), "team-a") {
        Ok(Expected::Patched(p)) => p,
        other => panic!("{other:?}"),
    };
    let check = judge(
        &config,
        &Bounds::default(),
        "team-a",
        &Ok(annotated(true)),
        &Ok(stored),
        &Webhook {
            probe: &Probe::ANNOTATED,
            ..target()
        },
    );
    assert_eq!(check.result, Status::Passed, "{check:?}");
    assert_eq!(check.id, "probe-webhook");
    let unpatched = judge(
        &config,
        &Bounds::default(),
        "team-a",
        &Ok(annotated(true)),
        &Ok(annotated(false)),
        &Webhook {
            probe: &Probe::ANNOTATED,
            ..target()
        },
    );
    assert_eq!(unpatched.result, Status::Failed, "{unpatched:?}");
    assert_eq!(unpatched.id, "probe-webhook");
}

fn judged(probe: Result<Value, String>) -> Check {
    let config = Config::from_yaml(CONFIG).expect("valid");
    judge(
        &config,
        &Bounds::default(),
        "team-a",
        &Ok(baseline()),
        &probe,
        &target(),
    )
}

#[test]
fn the_prediction_is_the_webhooks_patch_on_the_pod_the_api_server_sends() {
    let p = predicted();
    assert_eq!(
        injected(&p),
        Some(
            json!({"data": ["data-gcs", "data1"], "outputs": "outputs1", "outputsPath": "/outputs/1/team-a/persistence-webhook-check-probe"})
        )
    );
    assert!(
        labels_of(&p).get(LABEL_INJECTION).is_none(),
        "the opt-out label is taken off"
    );
    let vols: Vec<&str> = names(&p["spec"]["volumes"]);
    assert!(
        vols.contains(&"pw-data1") && vols.contains(&"kube-api-access-abcde"),
        "{vols:?}"
    );
}

#[test]
fn a_result_as_predicted_passes_despite_defaults_and_other_plugins() {
    let c = judged(Ok(stored()));
    assert!(c.passed(), "{c:#?}");
    assert_eq!(c.detail, "data data-gcs, data1; outputs outputs1 at /outputs/1/team-a/persistence-webhook-check-probe");
}

/// Edits the list at `pointer` of a pod.
fn in_list(p: &mut Value, pointer: &str, f: impl FnOnce(&mut Vec<Value>)) {
    if let Some(list) = p.pointer_mut(pointer).and_then(Value::as_array_mut) {
        f(list);
    }
}

fn set_where(list: &mut [Value], name: &str, pointer: &str, value: Value) {
    for item in list.iter_mut().filter(|x| x["name"] == name) {
        if let Some(slot) = item.pointer_mut(pointer) {
            *slot = value.clone();
        }
    }
}

#[test]
fn each_difference_is_named() {
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (
            |p| {
                in_list(p, "/spec/volumes", |v| {
                    v.retain(|v| v["name"] != "pw-data1")
                })
            },
            "volumes: predicted",
        ),
        (
            |p| {
                in_list(p, "/spec/volumes", |v| {
                    set_where(v, "pw-data1", "/hostPath/path", json!("/elsewhere"))
                })
            },
            "volume \"pw-data1\"",
        ),
        (
            |p| {
                in_list(p, "/spec/containers/0/volumeMounts", |m| {
                    m.retain(|m| m["name"] != "pw-outputs1")
                })
            },
            "mounts predicted",
        ),
        (
            |p| {
                in_list(p, "/spec/containers/0/env", |e| {
                    set_where(e, "POLYAXON_RUN_OUTPUTS_PATH", "/value", json!("/other"))
                })
            },
            "env POLYAXON_RUN_OUTPUTS_PATH predicted",
        ),
        (
            |p| {
                in_list(p, "/spec/containers/0/env", |e| {
                    e.retain(|e| e["name"] != "gcs-key.json")
                })
            },
            "env gcs-key.json predicted",
        ),
        (
            |p| {
                p["metadata"]["annotations"][ANNOTATION_INJECTED] = json!("{\"data\":[]}");
            },
            "annotation polyaxon.com/persistence-injected",
        ),
    ];
    for (edit, fragment) in cases {
        let mut p = stored();
        edit(&mut p);
        let c = judged(Ok(p));
        assert_eq!(c.result, Status::Failed, "{fragment}: {c:#?}");
        assert!(c.detail.contains(fragment), "{fragment}: {c:#?}");
        assert!(
            c.hint
                .as_deref()
                .is_some_and(|h| h.contains("does not serve the config")),
            "{c:#?}"
        );
    }
}

#[test]
fn refusals_and_unpatched_results_are_told_apart() {
    let c = judged(Ok(baseline()));
    assert_eq!(c.result, Status::Failed);
    assert!(c.detail.contains("without the webhook's patch"), "{c:#?}");
    assert!(!c.detail.contains("matchCondition"), "{c:#?}");
    // A matchCondition false for the probe is named.
    let config = Config::from_yaml(CONFIG).expect("valid");
    let conditions = [
        MatchCondition {
            name: "not-kubernetes-system-namespace".into(),
            expression: "!request.namespace.startsWith('kube-')".into(),
        },
        MatchCondition {
            name: "only-annotated".into(),
            expression: "has(object.metadata.annotations) && 'polyaxon.com/persistence' in object.metadata.annotations".into(),
        },
        MatchCondition {
            name: "no-nodes".into(),
            expression: "!('system:nodes' in request.userInfo.groups)".into(),
        },
    ];
    let with = |conditions: &[MatchCondition]| {
        judge(
            &config,
            &Bounds::default(),
            "team-a",
            &Ok(baseline()),
            &Ok(baseline()),
            &Webhook {
                conditions,
                ..target()
            },
        )
    };
    let c = with(&conditions);
    assert_eq!(c.result, Status::Failed);
    assert!(
        c.detail
            .contains("matchCondition only-annotated (has(object.metadata.annotations)")
            && c.detail.contains("namespace team-a"),
        "{c:#?}"
    );
    assert!(c
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("fix matchCondition only-annotated")));
    // None false, one not evaluated offline: it is named as a possible cause.
    let c = with(&[conditions[0].clone(), conditions[2].clone()]);
    assert_eq!(c.result, Status::Failed);
    assert!(
        c.detail
            .contains("or matchCondition no-nodes (not evaluated offline)"),
        "{c:#?}"
    );
    let down = "Internal error occurred: failed calling webhook \"persistence.polyaxon.com\": Post \"https://127.0.0.1:1/mutate\": dial tcp 127.0.0.1:1: connect: connection refused";
    let c = judged(Err(down.into()));
    assert_eq!(c.result, Status::Failed);
    assert!(
        c.detail.contains("cannot call the webhook") && c.detail.contains("connection refused"),
        "{c:#?}"
    );
    assert!(c
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("kubectl -n pw get pods,endpoints")));
    // Refused after the patch, admitted before it: the patch is what is refused.
    let c = judged(Err("pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": restricted volume types (volumes \"pw-data1\" use restricted volume type \"hostPath\")".into()));
    assert_eq!(c.result, Status::Failed);
    assert!(c.detail.contains("unpatched twin is admitted"), "{c:#?}");
    assert!(c.hint.as_deref().is_some_and(|h| h.contains("PodSecurity")));
    // Refused before the patch: nothing can be said about the webhook.
    let config = Config::from_yaml(CONFIG).expect("valid");
    let quota = "pods \"x\" is forbidden: exceeded quota".to_owned();
    let c = judge(
        &config,
        &Bounds::default(),
        "team-a",
        &Err(quota.clone()),
        &Err(quota),
        &target(),
    );
    assert_eq!(c.result, Status::Warning);
    let c = judged(Err(
        "admission webhook \"persistence.polyaxon.com\" denied the request: nope".into(),
    ));
    assert_eq!(c.result, Status::Failed);
    assert!(c.detail.contains("predicts it is admitted"));
    let config = Config::from_yaml(CONFIG).expect("valid");
    let c = judge(
        &config,
        &Bounds::default(),
        "team-a",
        &Err(down.into()),
        &Err(down.into()),
        &target(),
    );
    assert!(c.detail.contains("cannot call the webhook"));
}

#[test]
fn a_predicted_denial_is_a_failure_either_way() {
    // A store mounted where the pod already mounts something: denied.
    let config = Config::from_yaml(
        "data:\n  d: {mountPath: /var/run/secrets/kubernetes.io/serviceaccount, hostPath: /x}\n",
    )
    .expect("valid");
    let base = Ok(baseline());
    let denied = Err(
        "admission webhook \"persistence.polyaxon.com\" denied the request: mount conflict"
            .to_owned(),
    );
    let c = judge(
        &config,
        &Bounds::default(),
        "team-a",
        &base,
        &denied,
        &target(),
    );
    assert_eq!(c.result, Status::Failed);
    assert!(c.detail.contains("as predicted"), "{c:#?}");
    let c = judge(
        &config,
        &Bounds::default(),
        "team-a",
        &base,
        &Ok(baseline()),
        &target(),
    );
    assert!(c.detail.contains("predicted a denial"), "{c:#?}");
}

#[test]
fn contains_allows_more_fields_but_not_other_values() {
    assert!(covers(&json!({"a": 1, "b": 2}), &json!({"a": 1})));
    assert!(!covers(&json!({"a": 2}), &json!({"a": 1})));
    assert!(!covers(&json!([1, 2]), &json!([1])));
    assert!(covers(&json!([{"a": 1, "x": 0}]), &json!([{"a": 1}])));
}
