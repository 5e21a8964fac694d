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

use super::objects::MatchCondition;
use super::report::Check;
use crate::bounds::Bounds;
use crate::cluster::registration::match_conditions::{evaluate, excluding, unevaluated, Bindings};
use crate::config::Config;
use crate::patch::covers;
use crate::review::{review_with, Decision};
use crate::vocabulary::{
    ANNOTATION_INJECTED, ANNOTATION_PERSISTENCE, LABEL_INJECTION, OPT_OUT, RESERVED_ENV,
    VOLUME_PREFIX,
};

/// The probe pod's name (a dry run stores nothing, so it never collides
/// with itself; only a real pod of this name would make the dry run fail).
pub const NAME: &str = "persistence-webhook-check-probe";
/// The probe's container (never pulled: dry runs start nothing).
pub const DEFAULT_IMAGE: &str = "registry.k8s.io/pause:3.10";
const CONTAINER: &str = "probe";

/// One probe: its check and the selection annotation its pod carries.
#[derive(Debug)]
pub struct Probe {
    /// The check's id.
    pub id: &'static str,
    /// The check's title.
    pub title: &'static str,
    /// `polyaxon.com/persistence` on the pod, if any.
    pub selection: Option<&'static str>,
}

impl Probe {
    /// What an ordinary run gets: no selection annotation. In a hybrid
    /// install the admission policies patch it, not the webhook.
    pub const PLAIN: Probe = Probe {
        id: "probe",
        title: "a dry-run pod is patched as `mutate` predicts",
        selection: None,
    };

    /// The same selection (`{}`: every data store, the default outputs)
    /// written as an annotation, which a hybrid install leaves to the
    /// webhook: its probe there.
    pub const ANNOTATED: Probe = Probe {
        id: "probe-webhook",
        title: "a dry-run pod with a selection annotation is patched by the webhook as `mutate` predicts (hybrid: the policies leave it to the webhook)",
        selection: Some("{}"),
    };
}

fn probe_labels(opted_out: bool) -> Value {
    let mut labels = json!({"app.kubernetes.io/name": "persistence-webhook-check"});
    if opted_out {
        labels[LABEL_INJECTION] = json!(OPT_OUT);
    }
    labels
}

/// The probe pod: a tiny, restricted pod (so PodSecurity, quotas and
/// LimitRanges let it through), with `probe`'s selection annotation if any.
/// `opted_out` makes the baseline twin.
pub fn pod(image: &str, opted_out: bool, probe: &Probe) -> Value {
    let mut metadata = json!({"name": NAME, "labels": probe_labels(opted_out)});
    if let Some(selection) = probe.selection {
        metadata["annotations"] = json!({ ANNOTATION_PERSISTENCE: selection });
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
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
    let body = crate::offline::dry_run::review_body(&pod, namespace, "persistence-webhook-check");
    let reviewed = review_with(config, bounds, &body).map_err(|e| e.to_string())?;
    Ok(match reviewed.decision {
        Decision::Patched(patch) => {
            let mut predicted = pod;
            json_patch::patch(&mut predicted, patch.patch())
                .map_err(|e| format!("the predicted patch does not apply: {e}"))?;
            Expected::Patched(predicted)
        }
        Decision::Unchanged(skip) => Expected::Unchanged(skip.as_str().to_owned()),
        Decision::Denied(denial) => Expected::Denied(denial.to_string()),
        Decision::Invalid(msg) => Expected::Denied(msg),
    })
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
            if !covers(g, w) {
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
            if !covers(&gm, &wm) {
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
                    Some(g) if covers(g, env) => {}
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

/// Which webhook install the hints name.
pub struct Webhook<'a> {
    /// The webhook's namespace, for hints.
    pub webhook_namespace: &'a str,
    /// The webhook's name, for hints.
    pub webhook_name: &'a str,
    /// The registration's `matchConditions`, to name the one that kept the
    /// probe from the webhook.
    pub conditions: &'a [MatchCondition],
    /// Which probe this is.
    pub probe: &'a Probe,
}

fn refused(message: &str, t: &Webhook<'_>) -> Check {
    if message.contains("failed calling webhook") {
        return Check::fail(
            t.probe.id,
            t.probe.title,
            format!("the API server cannot call the webhook: {message}"),
            format!(
                "is the webhook up and reachable? kubectl -n {ns} get pods,endpoints; kubectl -n {ns} logs deploy/{name}; and does the caBundle verify the certificate it serves?",
                ns = t.webhook_namespace,
                name = t.webhook_name
            ),
        );
    }
    Check::warn(
        t.probe.id,
        t.probe.title,
        format!("the API server refused the probe pod, so the patch could not be checked: {message}"),
        "an admission policy, quota or PodSecurity rule refused it: try kubectl create --dry-run=server of a pod there, or pass --probe-image an image your policies allow",
    )
}

/// The probe came back without the patch: a matchCondition that is false
/// for it is named (the API server skipped the webhook); else the
/// conditions not evaluated offline are listed beside the usual causes.
fn unpatched(actual: &Value, namespace: &str, t: &Webhook<'_>) -> Check {
    let judged = evaluate(t.conditions, &Bindings::pod_create(actual, namespace, true));
    if let Some(c) = excluding(&judged) {
        return Check::fail(
            t.probe.id,
            t.probe.title,
            format!(
                "the probe was admitted without the webhook's patch: matchCondition {} ({}) is false for a pod CREATE in namespace {namespace}, so the API server does not call the webhook for its pods",
                c.name, c.expression
            ),
            format!(
                "fix matchCondition {} (kubectl get mutatingwebhookconfiguration {} -o yaml), or take the opt-in label off the namespace",
                c.name, t.webhook_name
            ),
        );
    }
    let unknown = unevaluated(&judged);
    let conditions = if unknown.is_empty() {
        String::new()
    } else {
        format!(
            ", or matchCondition {} (not evaluated offline) is false for it",
            unknown.join(", ")
        )
    };
    Check::fail(
        t.probe.id,
        t.probe.title,
        format!("the probe was admitted without the webhook's patch: the API server did not call it{conditions}, or the call failed and failurePolicy is Ignore"),
        format!(
            "compare the namespace's labels with the namespaceSelector and the matchConditions (kubectl get mutatingwebhookconfiguration {} -o yaml), and read the webhook's logs",
            t.webhook_name
        ),
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
    t: &Webhook<'_>,
) -> Check {
    let baseline = match baseline {
        Ok(b) => b,
        Err(message) => return refused(message, t),
    };
    let expected = match predict(config, bounds, baseline, namespace) {
        Ok(e) => e,
        Err(e) => {
            return Check::fail(
                t.probe.id,
                t.probe.title,
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
            t.probe.id,
            t.probe.title,
            format!("pods with no selection are refused here, as predicted: {why}"),
            "fix the stores available to this namespace in the config (see the message), then check again",
        ),
        (Expected::Denied(why), Ok(_)) => Check::fail(
            t.probe.id,
            t.probe.title,
            format!("predicted a denial ({why}), but the probe was admitted"),
            stale,
        ),
        (_, Err(message)) if message.contains("denied the request") => Check::fail(
            t.probe.id,
            t.probe.title,
            format!("the webhook refused the probe, but `mutate` predicts it is admitted: {message}"),
            stale,
        ),
        (_, Err(message)) if message.contains("failed calling webhook") => refused(message, t),
        // Its opted-out twin was admitted: what the patch adds is refused.
        (_, Err(message)) => Check::fail(
            t.probe.id,
            t.probe.title,
            format!("the unpatched twin is admitted, but the patched pod is refused: {message}"),
            "a policy here refuses what the stores add (PodSecurity restricted forbids hostPath volumes, for one): limit those stores with namespaces: in the config, or relax the namespace's policy",
        ),
        (Expected::Unchanged(why), Ok(actual)) => {
            if injected(actual).is_none() && ours(&actual["spec"]["volumes"]).is_empty() {
                Check::pass(t.probe.id, t.probe.title, format!("left unchanged, as predicted ({why})"))
            } else {
                Check::fail(t.probe.id, t.probe.title, format!("predicted unchanged ({why}), but it was patched"), stale)
            }
        }
        (Expected::Patched(predicted), Ok(actual)) => {
            if injected(actual).is_none() && ours(&actual["spec"]["volumes"]).is_empty() && actual["spec"]["containers"][0]["env"].is_null() {
                return unpatched(actual, namespace, t);
            }
            let diffs = differences(baseline, predicted, actual);
            if diffs.is_empty() {
                Check::pass(t.probe.id, t.probe.title, summary(predicted))
            } else {
                Check::fail(t.probe.id, t.probe.title, format!("the patch differs from the prediction:\n{}", diffs.join("\n")), stale)
            }
        }
    }
}

#[cfg(test)]
mod tests;
