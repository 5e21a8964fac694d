//! The Helm chart from the tests' side: the pinned `helm` (built by
//! `charts/tools/helm build`, found through `HELM`), rendering the chart and
//! the kustomize manifests into objects, and the comparison that
//! `charts/parity.yaml` allows. Included by `tests/helm.rs` and
//! `tests/e2e_helm.rs` with `#[path = "common/helm.rs"] mod helm;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

/// The release name and namespace every test renders with: `check`'s defaults.
pub const RELEASE: &str = "persistence-webhook";
pub const NAMESPACE: &str = "persistence-webhook";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart() -> PathBuf {
    root().join("charts/persistence-webhook")
}

/// The pinned helm binary: `HELM`, as `.ci/run` sets it from
/// `charts/tools/helm build`.
pub fn helm_path() -> PathBuf {
    match std::env::var_os("HELM") {
        Some(path) if Path::new(&path).is_file() => PathBuf::from(path),
        _ => panic!(
            "HELM is not set to a helm binary: run `export HELM=$(charts/tools/helm build)` \
             (Helm pinned in charts/tools/go.mod)"
        ),
    }
}

/// Runs helm with `args`.
pub fn helm(args: &[&str]) -> Output {
    Command::new(helm_path())
        .args(args)
        .output()
        .expect("helm runs")
}

/// Runs helm; panics with its stderr unless it succeeds; returns stdout.
pub fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

/// `helm template` of the chart as release `persistence-webhook` in
/// namespace `persistence-webhook`, with `extra` (e.g. `--set`, `-f`).
pub fn template(extra: &[&str]) -> Output {
    let chart = chart();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().expect("utf-8"),
        "--namespace",
        NAMESPACE,
    ];
    args.extend_from_slice(extra);
    helm(&args)
}

/// The same, which must succeed: the rendered text.
pub fn template_ok(extra: &[&str]) -> String {
    let out = template(extra);
    assert!(
        out.status.success(),
        "helm template {extra:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

/// Every non-empty document of a YAML stream, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `kubectl kustomize DIR` (kubectl from kube-local's `KUBEBUILDER_ASSETS`).
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let kubectl = match std::env::var_os("KUBEBUILDER_ASSETS") {
        Some(d) if Path::new(&d).join("kubectl").exists() => Path::new(&d).join("kubectl"),
        _ => PathBuf::from("kubectl"),
    };
    let out = Command::new(&kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (set KUBEBUILDER_ASSETS: eval \"$(tests/cluster/kube-local env)\")",
                kubectl.display()
            )
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).expect("UTF-8"))
}

/// `charts/parity.yaml`: the differences the parity tests allow, and only those.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parity {
    pub chart_values: Vec<String>,
    pub helm_labels: Vec<String>,
    pub kustomize_only: Vec<Only>,
    pub parsed_data: Vec<Parsed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Only {
    pub kind: String,
    pub name: String,
    pub why: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Parsed {
    pub config_map: String,
    pub key: String,
    pub why: String,
}

impl Parity {
    pub fn load() -> Parity {
        let path = root().join("charts/parity.yaml");
        let text = std::fs::read_to_string(&path).expect("charts/parity.yaml");
        serde_yaml::from_str(&text).expect("charts/parity.yaml parses")
    }

    /// The objects by `kind namespace/name`, with the allowed differences
    /// taken out. `kustomize`: the side whose extra objects are dropped.
    pub fn normalise(&self, docs: Vec<Value>, kustomize: bool) -> BTreeMap<String, Value> {
        let mut objects = BTreeMap::new();
        for mut doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if kustomize
                && self
                    .kustomize_only
                    .iter()
                    .any(|o| o.kind == kind && o.name == name)
            {
                continue;
            }
            self.strip_labels(&mut doc);
            if kind == "ConfigMap" {
                for p in self.parsed_data.iter().filter(|p| p.config_map == name) {
                    if let Some(text) = doc["data"][&p.key].as_str() {
                        let parsed: Value = serde_yaml::from_str(text).expect("ConfigMap YAML");
                        doc["data"][&p.key] = parsed;
                    }
                }
            }
            // Not a difference: the same bytes, base64 wrapped or not.
            if kind == "Secret" {
                if let Some(data) = doc["data"].as_object_mut() {
                    for v in data.values_mut() {
                        if let Some(text) = v.as_str() {
                            *v = Value::String(text.split_whitespace().collect());
                        }
                    }
                }
            }
            let ns = doc["metadata"]["namespace"].as_str().unwrap_or_default();
            objects.insert(format!("{kind} {ns}/{name}"), doc);
        }
        objects
    }

    fn strip_labels(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    // A Service's selector is a plain map of labels.
                    let plain_selector = key == "selector"
                        && child.as_object().is_some_and(|m| {
                            !m.contains_key("matchLabels") && !m.contains_key("matchExpressions")
                        });
                    if key == "labels" || key == "matchLabels" || plain_selector {
                        if let Value::Object(labels) = child {
                            for l in &self.helm_labels {
                                labels.remove(l);
                            }
                        }
                    }
                    self.strip_labels(child);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.strip_labels(v)),
            _ => {}
        }
    }
}

/// Every difference between two normalised renderings, one line each:
/// `object: path: kustomize <value> | chart <value>`.
pub fn differences(
    kustomize: &BTreeMap<String, Value>,
    chart: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (key, k) in kustomize {
        match chart.get(key) {
            None => found.push(format!("{key}: only in kustomize")),
            Some(c) => diff_values(key, "", k, c, &mut found),
        }
    }
    for key in chart.keys().filter(|k| !kustomize.contains_key(*k)) {
        found.push(format!("{key}: only in the chart"));
    }
    found
}

fn diff_values(object: &str, at: &str, k: &Value, c: &Value, found: &mut Vec<String>) {
    match (k, c) {
        (Value::Object(km), Value::Object(cm)) => {
            for (key, kv) in km {
                let path = format!("{at}/{key}");
                match cm.get(key) {
                    Some(cv) => diff_values(object, &path, kv, cv, found),
                    None => found.push(format!("{object}: {path}: kustomize {kv} | chart absent")),
                }
            }
            for (key, cv) in cm.iter().filter(|(key, _)| !km.contains_key(*key)) {
                found.push(format!(
                    "{object}: {at}/{key}: kustomize absent | chart {cv}"
                ));
            }
        }
        (Value::Array(ka), Value::Array(ca)) if ka.len() == ca.len() => {
            for (i, (kv, cv)) in ka.iter().zip(ca).enumerate() {
                diff_values(object, &format!("{at}/{i}"), kv, cv, found);
            }
        }
        _ if k != c => found.push(format!("{object}: {at}: kustomize {k} | chart {c}")),
        _ => {}
    }
}
