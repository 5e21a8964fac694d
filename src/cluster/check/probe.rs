//! The end-to-end probe of one namespace: a pod created with a server-side
//! dry run (stored nowhere) must come back patched exactly as the core's
//! `review` predicts. Pure: the pods to create, the prediction and the
//! comparison; the two dry runs themselves are the caller's.
//!
//! The prediction starts from the pod as the API server sends it to the
//! webhook: a first dry run of the same pod, labelled to opt out (so the
//! webhook is not called, or skips it), comes back with everything the
//! built-in admission plugins and defaulting add (the ServiceAccount token
//! volume, tolerations...). The probe's own labels are put back, the
//! result is reviewed by the same [`review_with`](crate::review_with) that
//! `serve` runs, and the patch applied. The comparison then looks at what
//! belongs to the webhook (the `pw-` volumes and their mounts, the env vars
//! the patch adds, the injected annotation), each predicted field present
//! with its value; fields the API server defaults after the patch (a
//! secret volume's `defaultMode`) and what other plugins add are allowed.

use serde_json::{json, Value};

use super::report::Check;
use super::webhook::OPT_OUT;
use crate::bounds::Bounds;
use crate::config::Config;
use crate::review::{review_with, Decision};
use crate::vocabulary::{ANNOTATION_INJECTED, LABEL_INJECTION, RESERVED_ENV, VOLUME_PREFIX};

/// The probe pod's name (a dry run stores nothing, so it never collides
/// with itself; only a real pod of this name would make the dry run fail).
pub const NAME: &str = "persistence-webhook-check-probe";
/// The probe's container (never pulled: dry runs start nothing).
pub const DEFAULT_IMAGE: &str = "registry.k8s.io/pause:3.10";
const CONTAINER: &str = "probe";
const ID: &str = "probe";
const TITLE: &str = "a dry-run pod is patched as `mutate` predicts";

fn probe_labels(opted_out: bool) -> Value {
    let mut labels = json!({"app.kubernetes.io/name": "persistence-webhook-check"});
    if opted_out {
        labels[LABEL_INJECTION] = json!(OPT_OUT);
    }
    labels
}

/// The probe pod: a tiny, restricted pod (so PodSecurity, quotas and
/// LimitRanges let it through) with no selection annotation, i.e. what an
/// ordinary run gets. `opted_out` makes the baseline twin.
pub fn pod(image: &str, opted_out: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": NAME, "labels": probe_labels(opted_out)},
        "spec": {
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": CONTAINER,
                "image": image,
                "resources": {
                    "requests": {"cpu": "1m", "memory": "8Mi"},
                    "limits": {"cpu": "10m", "memory": "16Mi"}
                },
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        }
    })
}

/// What the webhook should do with the probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Patch it into this pod.
    Patched(Value),
    /// Leave it alone, for this reason.
    Unchanged(String),
    /// Refuse it with this message.
    Denied(String),
}

/// The prediction from the baseline dry run (the opted-out twin as the API
/// server returned it).
pub fn predict(
    config: &Config,
    bounds: &Bounds,
    baseline: &Value,
    namespace: &str,
) -> Result<Expected, String> {
    let mut pod = baseline.clone();
    pod["metadata"]["labels"] = probe_labels(false);
    // The request the API server sends: built where `mutate` builds it.
    let body = crate::dry_run::review_body(&pod, namespace, "persistence-webhook-check");
    let reviewed = review_with(config, bounds, &body).map_err(|e| e.to_string())?;
    Ok(match reviewed.decision {
        Decision::Patched(patch) => {
            let mut predicted = pod;
            json_patch::patch(&mut predicted, &patch)
                .map_err(|e| format!("the predicted patch does not apply: {e}"))?;
            Expected::Patched(predicted)
        }
        Decision::Unchanged(skip) => Expected::Unchanged(skip.as_str().to_owned()),
        Decision::Denied(denial) => Expected::Denied(denial.to_string()),
        Decision::Invalid(msg) => Expected::Denied(msg),
    })
}

/// Every field of `want` is in `got` with the same value (arrays: same
/// length, element by element); `got` may have more (API defaults).
pub fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(gv, wv))),
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(gv, wv)| contains(gv, wv))
        }
        _ => got == want,
    }
}

fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|x| x["name"] == name)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default()
}

fn ours(volumes: &Value) -> Vec<&Value> {
    volumes
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|v| {
                    v["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(VOLUME_PREFIX))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn injected(pod: &Value) -> Option<Value> {
    pod["metadata"]["annotations"][ANNOTATION_INJECTED]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
}

/// What differs between the prediction and the stored result, in the
/// webhook's own fields.
pub fn differences(baseline: &Value, predicted: &Value, actual: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let (want_vols, got_vols) = (
        ours(&predicted["spec"]["volumes"]),
        ours(&actual["spec"]["volumes"]),
    );
    let want_names: Vec<&str> = want_vols
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let got_names: Vec<&str> = got_vols.iter().filter_map(|v| v["name"].as_str()).collect();
    if want_names != got_names {
        diffs.push(format!(
            "volumes: predicted [{}], got [{}]",
            want_names.join(", "),
            got_names.join(", ")
        ));
    } else {
        for (w, g) in want_vols.iter().zip(&got_vols) {
            if !contains(g, w) {
                diffs.push(format!("volume {}: predicted {w}, got {g}", w["name"]));
            }
        }
    }
    let ours_vol = |name: &str| name.starts_with(VOLUME_PREFIX);
    for list in ["initContainers", "containers"] {
        for want in predicted["spec"][list].as_array().into_iter().flatten() {
            let name = want["name"].as_str().unwrap_or_default();
            let Some(got) = named(&actual["spec"][list], name) else {
                diffs.push(format!("{list} {name}: missing from the result"));
                continue;
            };
            let pick = |c: &Value| -> Vec<Value> {
                c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["name"].as_str().is_some_and(ours_vol))
                    .cloned()
                    .collect()
            };
            let (wm, gm) = (Value::Array(pick(want)), Value::Array(pick(got)));
            if !contains(&gm, &wm) {
                diffs.push(format!("container {name}: mounts predicted {wm}, got {gm}"));
            }
            let before = named(&baseline["spec"][list], name)
                .map(|c| names(&c["env"]))
                .unwrap_or_default();
            for env in want["env"].as_array().into_iter().flatten() {
                let var = env["name"].as_str().unwrap_or_default();
                if before.contains(&var) {
                    continue;
                }
                match named(&got["env"], var) {
                    Some(g) if contains(g, env) => {}
                    Some(g) => diffs.push(format!(
                        "container {name}: env {var} predicted {env}, got {g}"
                    )),
                    None => diffs.push(format!(
                        "container {name}: env {var} predicted {env}, got none"
                    )),
                }
            }
            let predicted_env = names(&want["env"]);
            for var in names(&got["env"]) {
                if RESERVED_ENV.contains(&var) && !predicted_env.contains(&var) {
                    diffs.push(format!(
                        "container {name}: env {var} is set but not predicted"
                    ));
                }
            }
        }
    }
    let (wa, ga) = (injected(predicted), injected(actual));
    if wa != ga {
        let show = |v: &Option<Value>| v.as_ref().map_or("none".to_owned(), Value::to_string);
        diffs.push(format!(
            "annotation {ANNOTATION_INJECTED}: predicted {}, got {}",
            show(&wa),
            show(&ga)
        ));
    }
    diffs
}

fn summary(predicted: &Value) -> String {
    let Some(inj) = injected(predicted) else {
        return "patched".into();
    };
    let data: Vec<&str> = inj["data"]
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let data = if data.is_empty() {
        "none".to_owned()
    } else {
        data.join(", ")
    };
    match (inj["outputs"].as_str(), inj["outputsPath"].as_str()) {
        (Some(o), Some(p)) => format!("data {data}; outputs {o} at {p}"),
        _ => format!("data {data}; no outputs"),
    }
}

/// How the namespace's webhook and deployment looked before probing.
pub struct Target<'a> {
    /// The webhook's namespace, for hints.
    pub webhook_namespace: &'a str,
    /// The webhook's name, for hints.
    pub webhook_name: &'a str,
}

fn refused(message: &str, t: &Target<'_>) -> Check {
    if message.contains("failed calling webhook") {
        return Check::fail(
            ID,
            TITLE,
            format!("the API server cannot call the webhook: {message}"),
            format!(
                "is the webhook up and reachable? kubectl -n {ns} get pods,endpoints; kubectl -n {ns} logs deploy/{name}; and does the caBundle verify the certificate it serves?",
                ns = t.webhook_namespace,
                name = t.webhook_name
            ),
        );
    }
    Check::warn(
        ID,
        TITLE,
        format!("the API server refused the probe pod, so the patch could not be checked: {message}"),
        "an admission policy, quota or PodSecurity rule refused it: try kubectl create --dry-run=server of a pod there, or pass --probe-image an image your policies allow",
    )
}

/// The verdict, from the baseline and probe dry runs (each the pod the
/// API server returned, or its refusal message).
pub fn judge(
    config: &Config,
    bounds: &Bounds,
    namespace: &str,
    baseline: &Result<Value, String>,
    probe: &Result<Value, String>,
    t: &Target<'_>,
) -> Check {
    let baseline = match baseline {
        Ok(b) => b,
        Err(message) => return refused(message, t),
    };
    let expected = match predict(config, bounds, baseline, namespace) {
        Ok(e) => e,
        Err(e) => {
            return Check::fail(
                ID,
                TITLE,
                format!("cannot predict the patch: {e}"),
                "report this as a bug, with the check output",
            )
        }
    };
    let stale = format!(
        "the webhook does not serve the config in the ConfigMap (a reload that failed, or another version): kubectl -n {} logs deploy/{} | grep -i config",
        t.webhook_namespace, t.webhook_name
    );
    match (&expected, probe) {
        (Expected::Denied(why), Err(message)) if message.contains("denied the request") => Check::fail(
            ID,
            TITLE,
            format!("pods with no selection are refused here, as predicted: {why}"),
            "fix the stores available to this namespace in the config (see the message), then check again",
        ),
        (Expected::Denied(why), Ok(_)) => Check::fail(
            ID,
            TITLE,
            format!("predicted a denial ({why}), but the probe was admitted"),
            stale,
        ),
        (_, Err(message)) if message.contains("denied the request") => Check::fail(
            ID,
            TITLE,
            format!("the webhook refused the probe, but `mutate` predicts it is admitted: {message}"),
            stale,
        ),
        (_, Err(message)) => refused(message, t),
        (Expected::Unchanged(why), Ok(actual)) => {
            if injected(actual).is_none() && ours(&actual["spec"]["volumes"]).is_empty() {
                Check::pass(ID, TITLE, format!("left unchanged, as predicted ({why})"))
            } else {
                Check::fail(ID, TITLE, format!("predicted unchanged ({why}), but it was patched"), stale)
            }
        }
        (Expected::Patched(predicted), Ok(actual)) => {
            if injected(actual).is_none() && ours(&actual["spec"]["volumes"]).is_empty() && actual["spec"]["containers"][0]["env"].is_null() {
                return Check::fail(
                    ID,
                    TITLE,
                    "the probe was admitted without the webhook's patch: the API server did not call it, or the call failed and failurePolicy is Ignore",
                    format!(
                        "compare the namespace's labels with the namespaceSelector (kubectl get mutatingwebhookconfiguration {} -o yaml), and read the webhook's logs",
                        t.webhook_name
                    ),
                );
            }
            let diffs = differences(baseline, predicted, actual);
            if diffs.is_empty() {
                Check::pass(ID, TITLE, summary(predicted))
            } else {
                Check::fail(ID, TITLE, format!("the patch differs from the prediction:\n{}", diffs.join("\n")), stale)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut p = pod(DEFAULT_IMAGE, true);
        p["metadata"]["namespace"] = json!("team-a");
        p["metadata"]["uid"] = json!("0b6c-uid");
        p["spec"]["serviceAccountName"] = json!("default");
        p["spec"]["volumes"] =
            json!([{"name": "kube-api-access-abcde", "projected": {"sources": []}}]);
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

    fn target() -> Target<'static> {
        Target {
            webhook_namespace: "pw",
            webhook_name: "persistence-webhook",
        }
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
        let c = judged(Err("pods \"x\" is forbidden: exceeded quota".into()));
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
        assert!(contains(&json!({"a": 1, "b": 2}), &json!({"a": 1})));
        assert!(!contains(&json!({"a": 2}), &json!({"a": 1})));
        assert!(!contains(&json!([1, 2]), &json!([1])));
        assert!(contains(&json!([{"a": 1, "x": 0}]), &json!([{"a": 1}])));
    }
}
