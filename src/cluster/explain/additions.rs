//! What the webhook added to a stored pod, told apart from the author's own
//! fields, so that live `explain` can re-review a pod mutated under an
//! older config as if it were created today: without our additions, the
//! answer is "today's config gives X instead of Y", not an `env-conflict`
//! with the values the older config wrote. Pure.
//!
//! Ours, without doubt: the `pw-` volumes and every mount of them, the
//! webhook's own variables (`POLYAXON_RUN_DATA_PATHS`,
//! `POLYAXON_RUN_OUTPUTS_PATH`, `POLYSTORES_RUN_STORES_ACCESS_KEYS`), a
//! store's secret variable (named as its Secret key, read from that key),
//! and `GOOGLE_APPLICATION_CREDENTIALS` pointing into the webhook's key
//! directory. The other SDK variables (`AWS_*`, `AZURE_STORAGE_*`, ...) are
//! left: a container may set them itself, and the webhook then keeps its
//! own (SPEC §7), so for them the re-review says "keeps its own" rather than
//! guessing. The injected annotation is kept: it carries the recorded
//! outputs path, which today's review keeps as the webhook does.

use serde_json::{json, Map, Value};

use crate::patch::covers;
use crate::vocabulary::{
    ENV_ACCESS_KEYS, ENV_DATA_PATHS, ENV_GOOGLE_CREDENTIALS, ENV_OUTPUTS_PATH, GCS_CREDENTIALS_DIR,
    VOLUME_PREFIX,
};

const CONTAINER_LISTS: [&str; 2] = ["initContainers", "containers"];

/// Whether `env` (one entry of a container's `env`) is the webhook's.
fn env_is_ours(env: &Value) -> bool {
    let name = env["name"].as_str().unwrap_or_default();
    if [ENV_DATA_PATHS, ENV_OUTPUTS_PATH, ENV_ACCESS_KEYS].contains(&name) {
        return true;
    }
    if name == ENV_GOOGLE_CREDENTIALS {
        return env["value"]
            .as_str()
            .is_some_and(|v| v.starts_with(&format!("{GCS_CREDENTIALS_DIR}/")));
    }
    // A store's secret variable: named as the Secret key it reads.
    env["valueFrom"]["secretKeyRef"]["key"].as_str() == Some(name)
}

fn mount_is_ours(mount: &Value) -> bool {
    mount["name"]
        .as_str()
        .is_some_and(|n| n.starts_with(VOLUME_PREFIX))
}

/// Keeps the entries of the list at `list` for which `keep` holds; drops a
/// list left empty (the webhook adds a missing list whole).
fn retain(parent: &mut Value, list: &str, keep: impl Fn(&Value) -> bool) {
    let Some(map) = parent.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(items)) = map.get_mut(list) {
        items.retain(|v| keep(v));
        if items.is_empty() {
            map.remove(list);
        }
    }
}

/// The pod without what the webhook added.
pub fn without_ours(pod: &Value) -> Value {
    let mut pod = pod.clone();
    let spec = &mut pod["spec"];
    retain(spec, "volumes", |v| !mount_is_ours(v));
    for list in CONTAINER_LISTS {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                retain(c, "volumeMounts", |m| !mount_is_ours(m));
                retain(c, "env", |e| !env_is_ours(e));
            }
        }
    }
    pod
}

/// The webhook's additions to `pod`, by name: `volumes` (name to volume)
/// and, per container, its mounts (volume name to mount) and variables
/// (name to entry).
pub fn ours(pod: &Value) -> Value {
    let by_name = |items: &Value, key: &str, is_ours: &dyn Fn(&Value) -> bool| {
        let mut out = Map::new();
        for item in items
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| is_ours(v))
        {
            if let Some(name) = item[key].as_str() {
                out.insert(name.to_owned(), item.clone());
            }
        }
        Value::Object(out)
    };
    let mut containers = Map::new();
    for list in CONTAINER_LISTS {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default();
            containers.insert(
                format!("{list}/{name}"),
                json!({
                    "mounts": by_name(&c["volumeMounts"], "name", &mount_is_ours),
                    "env": by_name(&c["env"], "name", &env_is_ours),
                }),
            );
        }
    }
    json!({
        "volumes": by_name(&pod["spec"]["volumes"], "name", &mount_is_ours),
        "containers": containers,
    })
}

/// Whether the stored pod's additions are the ones today's review
/// predicts: the same names everywhere, each stored entry holding every
/// predicted field (the API server adds defaults after the patch).
pub fn same(stored: &Value, predicted: &Value) -> bool {
    same_keys(stored, predicted) && covers(stored, predicted)
}

/// The same object keys at every level of two `ours` values.
fn same_keys(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(k, v)| {
                    b.get(k).is_some_and(|w| {
                        // Below an entry (a volume, a mount, a variable) the
                        // API server may add fields: only the levels of the
                        // `ours` shape must match exactly.
                        v.get("name").is_some() || same_keys(v, w)
                    })
                })
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "annotations": {"polyaxon.com/persistence-injected": "{}"}},
            "spec": {
                "volumes": [
                    {"name": "kube-api-access-x", "projected": {}},
                    {"name": "pw-data1", "hostPath": {"path": "/mnt/1"}},
                    {"name": "pw--gcs-credentials", "secret": {"secretName": "gcs"}}
                ],
                "containers": [{
                    "name": "main",
                    "env": [
                        {"name": "MINE", "value": "1"},
                        {"name": "POLYAXON_RUN_OUTPUTS_PATH", "value": "/outputs/old"},
                        {"name": "gcs-key.json", "valueFrom": {"secretKeyRef": {"name": "gcs", "key": "gcs-key.json"}}},
                        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/run/secrets/polyaxon.com/gcs/gcs-key.json"},
                        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "id"}}}
                    ],
                    "volumeMounts": [
                        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                        {"name": "pw-data1", "mountPath": "/data/1"}
                    ]
                }]
            }
        })
    }

    #[test]
    fn only_the_webhooks_additions_are_removed() {
        let bare = without_ours(&pod());
        assert_eq!(
            bare["spec"]["volumes"],
            json!([{"name": "kube-api-access-x", "projected": {}}])
        );
        let main = &bare["spec"]["containers"][0];
        let names: Vec<&str> = main["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert_eq!(
            names,
            ["MINE", "AWS_ACCESS_KEY_ID"],
            "the author's own stay"
        );
        assert_eq!(main["volumeMounts"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            bare["metadata"]["annotations"]["polyaxon.com/persistence-injected"], "{}",
            "the recorded outputs path is kept"
        );
        // A list the webhook made whole goes whole.
        let mut only_ours = pod();
        only_ours["spec"]["containers"][0]["env"] =
            json!([{"name": "POLYAXON_RUN_DATA_PATHS", "value": "{}"}]);
        let bare = without_ours(&only_ours);
        assert!(bare["spec"]["containers"][0].get("env").is_none());
    }

    #[test]
    fn same_allows_defaults_but_not_other_names_or_values() {
        let stored = pod();
        let mut predicted = stored.clone();
        // What the patch wrote, before the API server's defaults.
        predicted["spec"]["volumes"][2] =
            json!({"name": "pw--gcs-credentials", "secret": {"secretName": "gcs"}});
        let mut defaulted = stored.clone();
        defaulted["spec"]["volumes"][2]["secret"]["defaultMode"] = json!(420);
        assert!(same(&ours(&defaulted), &ours(&predicted)));
        let mut moved = predicted.clone();
        moved["spec"]["containers"][0]["env"][1]["value"] = json!("/outputs/new");
        assert!(!same(&ours(&stored), &ours(&moved)), "another value");
        let mut more = predicted.clone();
        more["spec"]["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": "pw-data2", "hostPath": {"path": "/mnt/2"}}));
        assert!(!same(&ours(&stored), &ours(&more)), "another volume");
    }
}
